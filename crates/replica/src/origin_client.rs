//! Talking to the origin, and checking what it says.
//!
//! One pooled reqwest client (HTTP/2 by ALPN, video-sized windows) per
//! replica. Requests for cache fills carry no viewer headers, so what is
//! stored never depends on who asked first.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::Error;

pub use vcdn_http::range::{ContentRange, content_range};

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pooled client and the origin's base URL.
#[derive(Clone)]
pub struct OriginClient {
    client: reqwest::Client,
    base: String,
}

impl OriginClient {
    pub fn new(
        base: &str,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<OriginClient, Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_initial_stream_window_size(4 * 1024 * 1024)
            .http2_initial_connection_window_size(16 * 1024 * 1024)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .user_agent(concat!("vcdn-replica/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| {
                Error::Config(format!("reading origin CA {}: {e}", ca_file.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("origin CA {}: {e}", ca_file.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("origin client: {e}")))?;
        Ok(OriginClient {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The origin URL of an index key (its variant part removed).
    pub fn url(&self, key: &str) -> String {
        format!("{}{}", self.base, crate::variant::primary(key))
    }

    /// A fill request: the whole object, or bytes `first..=last` pinned to a
    /// version with `If-Range`.
    pub async fn fetch(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_range: Option<&HeaderValue>,
        vary: &crate::variant::Values,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .client
            .get(self.url(key))
            .header(header::ACCEPT_ENCODING, "identity");
        for (name, value) in crate::variant::request_headers(vary) {
            request = request.header(name, value);
        }
        if let Some((first, last)) = range {
            request = request.header(header::RANGE, format!("bytes={first}-{last}"));
            if let Some(if_range) = if_range {
                request = request.header(header::IF_RANGE, if_range.clone());
            }
        }
        request.send().await
    }

    /// A discovery request: bytes `first..=last`, conditional on the stale
    /// version when there is one (`If-None-Match`, else `If-Modified-Since`),
    /// so an unchanged object costs a 304 and no body.
    pub async fn fetch_conditional(
        &self,
        key: &str,
        (first, last): (u64, u64),
        stale: Option<&crate::object::Meta>,
        negotiated: &crate::variant::Values,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .client
            .get(self.url(key))
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::RANGE, format!("bytes={first}-{last}"));
        for (name, value) in crate::variant::request_headers(negotiated) {
            request = request.header(name, value);
        }
        if let Some(meta) = stale {
            if let Some(etag) = &meta.etag {
                request = request.header(header::IF_NONE_MATCH, etag.clone());
            } else if let Some(date) = &meta.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, date.clone());
            }
        }
        request.send().await
    }

    /// Forwards a viewer's request unchanged (method, headers, body).
    pub async fn forward(
        &self,
        method: http::Method,
        key: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .request(method, self.url(key))
            .headers(headers)
            .body(body)
            .send()
            .await
    }
}

/// Final status codes this cache understands and may store (RFC 9110 §15),
/// as the answer to a chunk request. Not 304 (it completes a stored
/// response), 416 (it answers the replica's chunk range, not the URL), nor
/// the ones about the replica's own connection to the origin (407, 408,
/// 421) or that need a header never replayed (426 and its `Upgrade`).
const UNDERSTOOD: &[u16] = &[
    200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405,
    406, 409, 410, 411, 412, 413, 414, 415, 417, 422, 500, 501, 502, 503, 504, 505,
];

/// Whether a shared cache may store this response (RFC 9111 §3): a status
/// it understands, nothing forbidding it (`no-store`, `private`, an
/// unusable `Vary`), and either a heuristically cacheable status or
/// explicit freshness (`max-age`, `s-maxage`, `Expires`) or `public`.
pub fn storable(status: StatusCode, headers: &HeaderMap) -> bool {
    if !UNDERSTOOD.contains(&status.as_u16()) {
        return false;
    }
    let forbidden = crate::freshness::directives(headers)
        .iter()
        // `private="field"` only restricts those fields, but storing the
        // rest is an optimisation this cache does not make.
        .any(|(name, _)| name == "no-store" || name == "private");
    if forbidden {
        return false;
    }
    // What `Vary` allows is decided with the variants (see `variant`).
    if crate::variant::of_response(headers) == crate::variant::Vary::Unstorable {
        return false;
    }
    crate::freshness::Heuristic::for_response(status, headers, None).allowed
        || crate::freshness::is_explicit(headers)
}

/// Headers that describe one message or connection, never replayed from
/// the cache (RFC 9110 §7.6.1, §6.4), and ones the replica sets itself.
const NOT_REPLAYED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
    "content-range",
    "date",
    "age",
    "set-cookie",
    "accept-ranges",
    "alt-svc",
    "x-cache",
    "cache-status",
    "x-served-by",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    // Targeted at this cache (RFC 9213); consumed here, not passed on.
    "cdn-cache-control",
    "vcdn-cache-control",
];

/// The end-to-end headers of an origin response that the cache replays.
pub fn replayed_headers(headers: &HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !NOT_REPLAYED.contains(&name.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Hop-by-hop headers removed when passing a message through.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn content_range_parsing() {
        let h = headers(&[("content-range", "bytes 0-99/1000")]);
        assert_eq!(
            content_range(&h),
            Some(ContentRange {
                first: 0,
                last: 99,
                total: 1000
            })
        );
        for bad in [
            "bytes */1000",
            "bytes 5-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1/*",
        ] {
            assert_eq!(
                content_range(&headers(&[("content-range", bad)])),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn no_store_and_private_are_not_stored() {
        assert!(storable(
            StatusCode::OK,
            &headers(&[("cache-control", "public, max-age=60")])
        ));
        assert!(!storable(
            StatusCode::OK,
            &headers(&[("cache-control", "no-store")])
        ));
        assert!(!storable(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=5, Private")])
        ));
    }

    #[test]
    fn statuses_are_stored_as_rfc_9111_allows() {
        let none = headers(&[]);
        let max_age = headers(&[("cache-control", "max-age=60")]);
        let public = headers(&[("cache-control", "public")]);
        for status in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                storable(status, &none),
                "{status} is heuristically cacheable"
            );
        }
        for status in [302, 307, 403, 500, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                !storable(status, &none),
                "{status} needs explicit freshness"
            );
            assert!(storable(status, &max_age), "{status} with max-age");
            assert!(storable(status, &public), "{status} with public");
        }
        for status in [304, 416, 299, 103, 407, 408, 421, 426] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!storable(status, &max_age), "{status} is never stored");
        }
    }
}
