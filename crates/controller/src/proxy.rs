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
//!   `proxy_max_attempts`, then the origin if fallback is on.
//! - A replica that fails mid-body is picked up where it stopped: the
//!   controller asks the next candidate for the rest (`Range` from the
//!   next byte, `If-Range` with the response's strong ETag) and splices it
//!   in, after checking that the answer is exactly those bytes of the same
//!   version. Without a strong ETag, or when no candidate can resume, the
//!   viewer's response is aborted: it is never ended as if complete, and
//!   never continued from another version.
//! - Every failed attempt asks for an immediate health probe of the
//!   replica, so a dead one leaves rotation sooner; only probes decide.
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
use futures_util::stream::BoxStream;
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

/// Viewer request headers passed on a resumption, which asks for a range
/// of its own and must not carry the viewer's range or preconditions.
const FORWARDED_ON_RESUME: &[HeaderName] =
    &[header::ACCEPT, header::CACHE_CONTROL, header::USER_AGENT];

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
    let mut failed = Vec::new();
    for target in &targets {
        let url = target_url(shared, target, &parts.uri);
        match attempt(shared, &url, &parts, viewer, first_byte).await {
            Ok(upstream) => {
                shared.routed(target);
                if let (Some(viewer), Target::Replica(member)) = (viewer, target) {
                    shared.sticky.put(viewer, key, &member.url);
                }
                return respond(shared, &parts, viewer, target, failed, upstream);
            }
            Err(reason) => {
                failed.push(target.label().to_owned());
                tracing::warn!(upstream = %url, reason, "proxy attempt failed before the first byte; trying the next");
                shared.metrics.proxy_failover(target.label());
                if let Target::Replica(member) = target {
                    member.probe_soon();
                }
            }
        }
    }
    Error::Upstream {
        url: parts.uri.path().to_owned(),
        reason: format!("all {} attempts failed", targets.len()),
    }
    .into_response()
}

/// An upstream response whose head and first body bytes have arrived.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    /// The body, its first piece already read.
    body: BoxStream<'static, reqwest::Result<Bytes>>,
}

/// The request for `url` with the viewer's `forwarded` headers.
fn upstream_request(
    shared: &Shared,
    url: &str,
    parts: &http::request::Parts,
    viewer: Option<std::net::IpAddr>,
    forwarded: &[HeaderName],
) -> reqwest::RequestBuilder {
    let mut request = shared.upstream.request(parts.method.clone(), url);
    for name in forwarded {
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
    request
}

/// One try: the response, if its head and first body bytes (or its end)
/// arrived within `first_byte`.
async fn attempt(
    shared: &Shared,
    url: &str,
    parts: &http::request::Parts,
    viewer: Option<std::net::IpAddr>,
    first_byte: Duration,
) -> Result<Upstream, String> {
    let request = upstream_request(shared, url, parts, viewer, FORWARDED);
    let head = async {
        let response = request.send().await.map_err(|e| describe(&e))?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return Err("replica answered 503".to_owned());
        }
        first_piece(response).await
    };
    tokio::time::timeout(first_byte, head)
        .await
        .map_err(|_| format!("no first byte within {} ms", first_byte.as_millis()))?
}

/// Reads a response's head and first body piece.
async fn first_piece(response: reqwest::Response) -> Result<Upstream, String> {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.bytes_stream();
    let first: Option<Bytes> = match body.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Err(describe(&e)),
        None => None,
    };
    Ok(Upstream {
        status,
        headers,
        body: futures_util::stream::iter(first.map(Ok))
            .chain(body)
            .boxed(),
    })
}

/// The viewer's response: the upstream's head, and its body relayed with
/// mid-body resumption where the response allows it.
fn respond(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    viewer: Option<std::net::IpAddr>,
    target: &Target,
    mut failed: Vec<String>,
    upstream: Upstream,
) -> Response {
    let resume = (parts.method == http::Method::GET)
        .then(|| Resume::of(upstream.status, &upstream.headers))
        .flatten();
    failed.push(target.label().to_owned());
    let relay = Relay {
        shared: shared.clone(),
        parts: Arc::new(parts.clone()),
        viewer,
        serving: target.label().to_owned(),
        tried: failed,
        body: upstream.body,
        resume,
        ended: false,
    };
    let body = futures_util::stream::unfold(relay, Relay::next);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = upstream.status;
    copy_headers(&upstream.headers, response.headers_mut());
    response
}

/// Where a proxied body can be picked up after its upstream fails: the
/// version (a strong ETag) and the span of the representation still owed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resume {
    etag: HeaderValue,
    /// The next byte the viewer expects, as an offset in the representation.
    next: u64,
    /// The last byte of this response, inclusive.
    last: u64,
    /// The representation's length.
    total: u64,
}

impl Resume {
    /// For a 200 with a length or a single-range 206, with a strong ETag.
    fn of(status: StatusCode, headers: &HeaderMap) -> Option<Resume> {
        let etag = headers
            .get(header::ETAG)
            .filter(|e| e.as_bytes().starts_with(b"\""))?
            .clone();
        let (next, last, total) = match status {
            StatusCode::OK => {
                let len: u64 = headers
                    .get(header::CONTENT_LENGTH)?
                    .to_str()
                    .ok()?
                    .parse()
                    .ok()?;
                (0, len.checked_sub(1)?, len)
            }
            StatusCode::PARTIAL_CONTENT => {
                let range = vcdn_http::range::content_range(headers)?;
                (range.first, range.last, range.total)
            }
            _ => return None,
        };
        Some(Resume {
            etag,
            next,
            last,
            total,
        })
    }

    /// Whether `headers` of a 206 carry exactly the bytes still owed, of
    /// the same version.
    fn continues(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let expected = vcdn_http::range::ContentRange {
            first: self.next,
            last: self.last,
            total: self.total,
        };
        status == StatusCode::PARTIAL_CONTENT
            && headers.get(header::ETAG) == Some(&self.etag)
            && vcdn_http::range::content_range(headers) == Some(expected)
    }
}

/// A proxied body in flight, and what is needed to resume it elsewhere.
struct Relay {
    shared: Arc<Shared>,
    parts: Arc<http::request::Parts>,
    viewer: Option<std::net::IpAddr>,
    /// Label (URL, or `origin`) of the upstream now streaming.
    serving: String,
    /// Upstreams that failed this request (and the one serving it).
    tried: Vec<String>,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    resume: Option<Resume>,
    ended: bool,
}

impl Relay {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Relay)> {
        if self.ended {
            return None;
        }
        loop {
            match self.body.next().await {
                Some(Ok(bytes)) => {
                    if let Some(resume) = &mut self.resume {
                        resume.next += bytes.len() as u64;
                    }
                    return Some((Ok(bytes), self));
                }
                None => return None,
                Some(Err(e)) => {
                    let reason = describe(&e);
                    if self.resume.as_ref().is_some_and(|r| r.next > r.last) {
                        // Every byte owed has been relayed: the failure
                        // came after the body, which is complete.
                        return None;
                    }
                    match self.pick_up(&reason).await {
                        Ok(()) => continue,
                        Err(why) => {
                            tracing::warn!(upstream = %self.serving, reason, why, "proxied body failed mid-way; aborting the viewer's response");
                            self.ended = true;
                            let error = std::io::Error::other(format!("{reason}; {why}"));
                            return Some((Err(error), self));
                        }
                    }
                }
            }
        }
    }

    /// Continues the body from the next candidate that can serve the rest.
    async fn pick_up(&mut self, reason: &str) -> Result<(), String> {
        let shared = self.shared.clone();
        if let Some(member) = shared.registry.get(&self.serving) {
            member.probe_soon();
        }
        let Some(resume) = self.resume.clone().filter(|r| r.next <= r.last) else {
            return Err("the response cannot be resumed (no strong ETag or length)".into());
        };
        let path = self.parts.uri.path().to_owned();
        let first_byte = Duration::from_millis(shared.config.proxy_first_byte_timeout_ms);
        for _ in 0..shared.config.proxy_max_attempts {
            let members = shared.registry.members();
            let candidate = shared
                .router
                .plan(&members, &path)
                .into_iter()
                .map(Target::Replica)
                .chain(shared.config.fallback_to_origin.then_some(Target::Origin))
                .find(|t| !self.tried.iter().any(|tried| tried == t.label()));
            let Some(target) = candidate else { break };
            self.tried.push(target.label().to_owned());
            let url = target_url(&shared, &target, &self.parts.uri);
            let request =
                upstream_request(&shared, &url, &self.parts, self.viewer, FORWARDED_ON_RESUME)
                    .header(
                        header::RANGE,
                        format!("bytes={}-{}", resume.next, resume.last),
                    )
                    .header(header::IF_RANGE, resume.etag.clone());
            let head = async {
                let response = request.send().await.map_err(|e| describe(&e))?;
                if !resume.continues(response.status(), response.headers()) {
                    return Err(format!(
                        "answered {} without the bytes still owed of the same version",
                        response.status()
                    ));
                }
                first_piece(response).await
            };
            match tokio::time::timeout(first_byte, head).await {
                Ok(Ok(upstream)) => {
                    tracing::info!(
                        from = %self.serving, to = %url, at = resume.next, reason,
                        "proxied body resumed on another upstream"
                    );
                    shared.metrics.proxy_resume(target.label());
                    shared.routed(&target);
                    if let (Some(viewer), Target::Replica(member)) = (self.viewer, &target) {
                        shared.sticky.put(viewer, video_key(&path), &member.url);
                    }
                    self.serving = target.label().to_owned();
                    self.body = upstream.body;
                    return Ok(());
                }
                Ok(Err(why)) => {
                    tracing::warn!(upstream = %url, why, "could not resume a proxied body here");
                }
                Err(_) => {
                    tracing::warn!(upstream = %url, "no first byte while resuming a proxied body");
                }
            }
            shared.metrics.proxy_failover(target.label());
            if let Target::Replica(member) = &target {
                member.probe_soon();
            }
        }
        Err("no upstream could resume it".into())
    }
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

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn only_a_strong_etag_with_a_known_span_is_resumable() {
        let full = headers(&[("etag", "\"v1\""), ("content-length", "1000")]);
        let resume = Resume::of(StatusCode::OK, &full).unwrap();
        assert_eq!((resume.next, resume.last, resume.total), (0, 999, 1000));
        let part = headers(&[("etag", "\"v1\""), ("content-range", "bytes 100-199/1000")]);
        let resume = Resume::of(StatusCode::PARTIAL_CONTENT, &part).unwrap();
        assert_eq!((resume.next, resume.last, resume.total), (100, 199, 1000));

        let weak = headers(&[("etag", "W/\"v1\""), ("content-length", "1000")]);
        assert_eq!(Resume::of(StatusCode::OK, &weak), None);
        let no_length = headers(&[("etag", "\"v1\"")]);
        assert_eq!(Resume::of(StatusCode::OK, &no_length), None);
        let empty = headers(&[("etag", "\"v1\""), ("content-length", "0")]);
        assert_eq!(Resume::of(StatusCode::OK, &empty), None);
        assert_eq!(Resume::of(StatusCode::NOT_FOUND, &full), None);
    }

    #[test]
    fn a_continuation_must_be_exactly_the_rest_of_the_same_version() {
        let mut resume = Resume::of(
            StatusCode::OK,
            &headers(&[("etag", "\"v1\""), ("content-length", "1000")]),
        )
        .unwrap();
        resume.next = 400;
        let rest = headers(&[("etag", "\"v1\""), ("content-range", "bytes 400-999/1000")]);
        assert!(resume.continues(StatusCode::PARTIAL_CONTENT, &rest));
        let other_version = headers(&[("etag", "\"v2\""), ("content-range", "bytes 400-999/1000")]);
        assert!(!resume.continues(StatusCode::PARTIAL_CONTENT, &other_version));
        let shifted = headers(&[("etag", "\"v1\""), ("content-range", "bytes 401-999/1000")]);
        assert!(!resume.continues(StatusCode::PARTIAL_CONTENT, &shifted));
        let whole = headers(&[("etag", "\"v2\""), ("content-length", "1000")]);
        assert!(!resume.continues(StatusCode::OK, &whole), "If-Range failed");
    }
}
