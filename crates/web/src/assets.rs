//! The page's files, embedded in the binary at compile time.
//!
//! They are plain HTML, CSS and ES modules written for browsers as they
//! are, so there is no front-end build: `cargo build` is the whole build.
//! Each response carries a strong ETag (a hash of the bytes) and
//! `Cache-Control: no-cache`, so a browser revalidates with a 304 and never
//! runs a stale script after an upgrade.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use vcdn_http::conditional::{self, ETag, Precondition, Validators};

/// One embedded file: its URL name under `/assets/`, type and bytes.
struct File {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! embed {
    ($name:literal, $content_type:expr) => {
        File {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/assets/`. `index.html` is not here: it is the page
/// shell, rendered once with the configured title (see [`crate::page`]).
static FILES: &[File] = &[
    embed!("style.css", "text/css; charset=utf-8"),
    embed!("app.js", JS),
    embed!("api.js", JS),
    embed!("format.js", JS),
    embed!("catalog.js", JS),
    embed!("player.js", JS),
    embed!("delivery.js", JS),
    embed!("dashboard.js", JS),
    embed!("sparkline.js", JS),
    embed!("favicon.svg", "image/svg+xml"),
];

/// The page shell's template.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");

/// A response body fixed for the life of the process, with its validator.
pub struct Document {
    content_type: HeaderValue,
    bytes: &'static [u8],
    etag: ETag,
    etag_header: HeaderValue,
}

impl Document {
    /// Wraps `bytes`; the ETag is their 64-bit XXH3 hash.
    pub fn new(content_type: &'static str, bytes: &'static [u8]) -> Document {
        let etag = ETag::strong(format!("{:016x}", twox_hash::XxHash3_64::oneshot(bytes)));
        let etag_header = HeaderValue::from_str(&etag.to_header_string())
            // A hex digest in quotes is always a valid header value.
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Document {
            content_type: HeaderValue::from_static(content_type),
            bytes,
            etag,
            etag_header,
        }
    }

    /// A document made at run time (the rendered shell, `/config.json`):
    /// leaked once at start-up, so it lives as long as the server.
    pub fn owned(content_type: &'static str, bytes: Vec<u8>) -> Document {
        Document::new(content_type, Vec::leak(bytes))
    }

    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }

    /// 200 with the body (none for HEAD), or 304 when the client's copy is
    /// current.
    pub fn respond(&self, method: &Method, request: &HeaderMap) -> Response {
        let validators = Validators {
            etag: Some(self.etag.clone()),
            last_modified: None,
        };
        let (status, body) = match conditional::evaluate(method, request, &validators) {
            Precondition::NotModified => (StatusCode::NOT_MODIFIED, Body::empty()),
            Precondition::Failed => (StatusCode::PRECONDITION_FAILED, Body::empty()),
            Precondition::Proceed if method == Method::HEAD => (StatusCode::OK, Body::empty()),
            Precondition::Proceed => (StatusCode::OK, Body::from(self.bytes)),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag_header.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if status == StatusCode::OK {
            headers.insert(header::CONTENT_TYPE, self.content_type.clone());
            if method == Method::HEAD {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.bytes.len()));
            }
        }
        response
    }
}

static DOCUMENTS: LazyLock<HashMap<&'static str, Document>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|f| (f.name, Document::new(f.content_type, f.bytes)))
        .collect()
});

/// The embedded file called `name`, if there is one.
pub fn get(name: &str) -> Option<&'static Document> {
    DOCUMENTS.get(name)
}

/// `GET /assets/<name>`.
pub(crate) async fn handler(
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    match get(&name) {
        Some(document) => document.respond(&method, &headers),
        None => crate::page::not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_its_type() {
        for file in FILES {
            let document = get(file.name).expect("listed file is served");
            assert!(!document.bytes().is_empty(), "{} is empty", file.name);
        }
        assert_eq!(get("app.js").unwrap().content_type, JS);
        assert!(get("../Cargo.toml").is_none());
        assert!(get("index.html").is_none());
    }

    #[test]
    fn modules_import_only_embedded_files() {
        // A module importing a file that is not embedded would 404 in the
        // browser and break the whole page.
        for file in FILES.iter().filter(|f| f.name.ends_with(".js")) {
            let text = std::str::from_utf8(file.bytes).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once("from '")
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map(|(path, _)| path)
                    .unwrap_or_else(|| panic!("unexpected import in {}: {line}", file.name));
                let name = target.strip_prefix("./").unwrap_or(target);
                assert!(get(name).is_some(), "{} imports {target}", file.name);
            }
        }
    }

    #[test]
    fn a_current_copy_gets_304() {
        let document = get("style.css").unwrap();
        let first = document.respond(&Method::GET, &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, etag);
        let second = document.respond(&Method::GET, &request);
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
    }
}
