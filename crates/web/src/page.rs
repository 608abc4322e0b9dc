//! The page shell and the page's configuration.
//!
//! The page is one HTML document whose script shows the catalog, a player
//! or the dashboard depending on the URL, so every client-side route
//! (`/`, `/watch/<path>`, `/dashboard`) answers with the same shell, and a
//! shared link opens straight on its video. The shell is rendered once at
//! start with the configured title, so the first paint already shows it.
//!
//! `/config.json` tells the script where the controller is: the page talks
//! to it directly, and to the replicas it routes to.

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::Config;
use crate::assets::{Document, INDEX_HTML};

/// What the page handlers share, all made once at start.
pub(crate) struct State {
    shell: Document,
    client_config: Document,
    csp: HeaderValue,
}

impl State {
    pub(crate) fn new(config: &Config) -> State {
        let title = config.title.trim();
        let shell = INDEX_HTML.replace("{{title}}", &escape_html(title));
        let client_config = serde_json::json!({
            "controller": config.controller_url(),
            "title": title,
        });
        State {
            shell: Document::owned("text/html; charset=utf-8", shell.into_bytes()),
            client_config: Document::owned(
                "application/json",
                client_config.to_string().into_bytes(),
            ),
            csp: content_security_policy(config.controller_url()),
        }
    }
}

/// Scripts, styles and images only from this server; API calls and video
/// from any HTTPS host, since the controller may send a viewer to any
/// replica. An `http://` controller (behind a TLS-terminating proxy, say)
/// widens that to plain HTTP.
fn content_security_policy(controller: &str) -> HeaderValue {
    let remote = if controller.starts_with("http://") {
        "https: http:"
    } else {
        "https:"
    };
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {remote}; media-src 'self' {remote} blob:; object-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        // Only fixed ASCII text goes into the policy.
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`, `/watch/<path>`, `/dashboard`: the page shell.
pub(crate) async fn shell(
    AxumState(state): AxumState<Arc<State>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut response = state.shell.respond(&method, &headers);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, state.csp.clone());
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    response
}

/// `GET /config.json`: `{"controller": "<base URL>", "title": "..."}`.
pub(crate) async fn client_config(
    AxumState(state): AxumState<Arc<State>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    state.client_config.respond(&method, &headers)
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(document: &Document) -> String {
        String::from_utf8(document.bytes().to_vec()).unwrap()
    }

    #[test]
    fn title_is_escaped_into_the_shell() {
        let state = State::new(&Config {
            title: "Tom & Jerry's <videos>".into(),
            ..Config::default()
        });
        let html = body(&state.shell);
        assert!(html.contains("<title>Tom &amp; Jerry&#39;s &lt;videos&gt;</title>"));
        assert!(!html.contains("{{title}}"));
    }

    #[test]
    fn client_config_names_the_controller() {
        let state = State::new(&Config {
            controller: Some("https://cdn.example.net:8084/".into()),
            ..Config::default()
        });
        let json: serde_json::Value = serde_json::from_str(&body(&state.client_config)).unwrap();
        assert_eq!(json["controller"], "https://cdn.example.net:8084");
        assert_eq!(json["title"], "vcdn");
    }

    #[test]
    fn plain_http_is_allowed_only_for_a_plain_http_controller() {
        let tls = content_security_policy("https://localhost:8084");
        assert!(!tls.to_str().unwrap().contains("http:"));
        let plain = content_security_policy("http://localhost:8084");
        assert!(
            plain
                .to_str()
                .unwrap()
                .contains("connect-src 'self' https: http:")
        );
    }
}
