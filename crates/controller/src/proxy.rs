//! Proxy mode: the controller fetches from the chosen replica and streams
//! the response through, for clients that cannot follow redirects.
//!
//! - Range and the conditional headers pass through, so seeks and 304s
//!   work as against the replica itself.
//! - The body is streamed chunk by chunk with back-pressure both ways
//!   (hyper polls the upstream body only as fast as the viewer reads), so
//!   memory stays flat whatever the file size.
//! - A replica that fails before the first body byte (refused, reset,
//!   timed out, or answering 503) is skipped for the next candidate, up to
//!   `proxy_max_attempts`, then the origin if fallback is on. After the
//!   first byte a failure aborts the viewer's response: it is never ended
//!   as if complete.
//! - A viewer's requests for one video stick to one replica (keyed by the
//!   viewer's address and the video), so all ranges of a playback hit the
//!   cache that holds it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use vcdn_http::access_log::PeerAddr;

use crate::health::{State, describe};
use crate::redirect::{Target, target_url};
use crate::routing::video_key;
use crate::{Error, Shared};

/// Viewer request headers passed to the replica.
const FORWARDED: &[HeaderName] = &[
    header::RANGE,
    header::IF_RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::ACCEPT,
    header::CACHE_CONTROL,
    header::USER_AGENT,
];

/// Response headers that describe one connection, not the resource
/// (RFC 9110 §7.6.1), plus CORS headers, which the controller's own layer
/// sets.
fn dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    ) || name.as_str().starts_with("access-control-")
}

pub(crate) async fn forward(shared: &Arc<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let path = parts.uri.path();
    let key = video_key(path);
    let viewer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());

    let members = shared.registry.members();
    let mut plan = shared.router.plan(&members, path);
    // The viewer's replica for this video comes first while it is healthy,
    // even if overloaded since: it already serves this playback.
    if let Some(url) = viewer.and_then(|v| shared.sticky.get(v, key)) {
        if let Some(pos) = plan.iter().position(|m| m.url == url) {
            let member = plan.remove(pos);
            plan.insert(0, member);
        } else if let Some(member) = members
            .iter()
            .find(|m| m.url == url && m.with_health(|h| h.state == State::Healthy))
        {
            plan.insert(0, member.clone());
        }
    }
    plan.truncate(shared.config.proxy_max_attempts as usize);
    let mut targets: Vec<Target> = plan.into_iter().map(Target::Replica).collect();
    if shared.config.fallback_to_origin {
        targets.push(Target::Origin);
    }
    if targets.is_empty() {
        shared.metrics.unavailable();
        return Error::NoReplica.into_response();
    }

    let first_byte = Duration::from_millis(shared.config.proxy_first_byte_timeout_ms);
    for target in &targets {
        let url = target_url(shared, target, &parts.uri);
        match attempt(shared, &url, &parts, viewer, first_byte).await {
            Ok(response) => {
                shared.routed(target);
                if let (Some(viewer), Target::Replica(member)) = (viewer, target) {
                    shared.sticky.put(viewer, key, &member.url);
                }
                return response;
            }
            Err(reason) => {
                tracing::warn!(upstream = %url, reason, "proxy attempt failed before the first byte; trying the next");
                shared.metrics.proxy_failover(target.label());
            }
        }
    }
    Error::Upstream {
        url: parts.uri.path().to_owned(),
        reason: format!("all {} attempts failed", targets.len()),
    }
    .into_response()
}

/// One try: the response, if its head and first body bytes (or its end)
/// arrived within `first_byte`.
async fn attempt(
    shared: &Shared,
    url: &str,
    parts: &http::request::Parts,
    viewer: Option<std::net::IpAddr>,
    first_byte: Duration,
) -> Result<Response, String> {
    let mut request = shared.upstream.request(parts.method.clone(), url);
    for name in FORWARDED {
        for value in parts.headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    if let Some(viewer) = viewer {
        let forwarded_for = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {viewer}"),
            None => viewer.to_string(),
        };
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let head = async {
        let response = request.send().await.map_err(|e| describe(&e))?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return Err("replica answered 503".to_owned());
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = response.bytes_stream();
        let first: Option<Bytes> = match body.next().await {
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(e)) => return Err(describe(&e)),
            None => None,
        };
        Ok((status, headers, first, body))
    };
    let (status, upstream_headers, first, rest) =
        tokio::time::timeout(first_byte, head)
            .await
            .map_err(|_| format!("no first byte within {} ms", first_byte.as_millis()))??;

    let body = futures_util::stream::iter(first.map(Ok)).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    copy_headers(&upstream_headers, response.headers_mut());
    Ok(response)
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap<HeaderValue>) {
    for (name, value) in from {
        if !dropped(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_cors_headers_are_not_copied() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("close"));
        from.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        from.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/100"),
        );
        from.append(header::VARY, HeaderValue::from_static("a"));
        from.append(header::VARY, HeaderValue::from_static("b"));
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert!(to.get(header::CONNECTION).is_none());
        assert!(to.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(to.get(header::CONTENT_RANGE).unwrap(), "bytes 0-9/100");
        assert_eq!(to.get_all(header::VARY).iter().count(), 2);
    }
}
