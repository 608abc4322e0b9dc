//! Cross-origin resource sharing for every role.
//!
//! Browsers reach vcdn across origins all the time: the page on :8000 asks
//! the controller on :8084, which redirects to a replica on :8081. After a
//! cross-origin redirect the next host sees `Origin: null`, so the default is
//! `*` (no credentials are ever needed). Preflights are answered by this
//! layer directly, never forwarded or redirected.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::Error;

/// Response headers a script may read: what a player or dashboard needs to
/// see which replica served a range and whether it was a hit.
pub const EXPOSED_HEADERS: &[&str] = &[
    "content-range",
    "content-length",
    "accept-ranges",
    "etag",
    "last-modified",
    "age",
    "x-cache",
    "cache-status",
    "x-served-by",
];

/// Builds the CORS layer for a list of allowed origins; `*` (or an empty
/// list) allows any origin.
pub fn layer(allowed_origins: &[String]) -> Result<CorsLayer, Error> {
    let allow_origin = if allowed_origins.is_empty() || allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let origins = allowed_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| Error::Config(format!("invalid CORS origin `{o}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(origins)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ])
        .allow_headers([
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::CACHE_CONTROL,
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
        ])
        .expose_headers(
            EXPOSED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(86_400)))
}
