//! The request driver: lookup → fill → respond, or pass through.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use vcdn_http::conditional::{self, Precondition};
use vcdn_http::range::{self, RangeRequest};

use crate::cache_status::CacheStatus;
use crate::object::{Object, chunks_covering};
use crate::origin_client;
use crate::request::Directives;
use crate::store::{Found, Lookup};
use crate::variant;

pub(crate) async fn handler(
    State(replica): State<Arc<crate::Shared>>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let cacheable_request = (method == Method::GET || method == Method::HEAD)
        && !request.headers().contains_key(header::AUTHORIZATION);
    if !cacheable_request {
        return pass(&replica, request).await;
    }
    let key = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let hint = range::first_byte_hint(request.headers().get(header::RANGE)).unwrap_or(0);

    let directives = Directives::of(request.headers());
    // A lookup that waited on another viewer's discovery may find that the
    // URL varies and this viewer needs another variant: it looks again, now
    // keyed by variant.
    let mut found = Lookup::Pass;
    for _ in 0..3 {
        found = replica
            .store
            .lookup(&key, hint, &directives, request.headers())
            .await;
        match &found {
            Lookup::Object(object, _) if !variant_matches(object, request.headers()) => {}
            _ => break,
        }
    }
    let (object, found) = match found {
        Lookup::Object(object, found) if variant_matches(&object, request.headers()) => {
            (object, found)
        }
        Lookup::Object(..) => return pass(&replica, request).await,
        Lookup::Pass => return pass(&replica, request).await,
        Lookup::NotCached => {
            // RFC 9111 §5.2.1.7: only-if-cached and nothing usable stored.
            let mut response =
                (StatusCode::GATEWAY_TIMEOUT, "not cached (only-if-cached)\n").into_response();
            CacheStatus::Pass.apply(replica.name(), response.headers_mut());
            return response;
        }
        Lookup::OriginFailed => {
            let mut response = (StatusCode::BAD_GATEWAY, "origin unavailable\n").into_response();
            CacheStatus::Pass.apply(replica.name(), response.headers_mut());
            return response;
        }
    };
    match respond(&replica, &object, found, &method, request.headers()) {
        Some(response) => response,
        None => pass(&replica, request).await,
    }
}

/// Whether a stored variant was fetched with this request's values of the
/// headers it varies on.
fn variant_matches(object: &Object, request: &HeaderMap) -> bool {
    let stored = &object.meta.vary;
    stored.is_empty() || variant::values(request, &variant::names(stored)) == *stored
}

/// Answers a GET or HEAD from a (possibly still filling) object; `None`
/// when the request should pass through instead (the disk is nearly full
/// and the range is not all cached).
fn respond(
    replica: &crate::Shared,
    object: &Arc<Object>,
    found: Found,
    method: &Method,
    request: &HeaderMap,
) -> Option<Response> {
    let meta = &object.meta;
    let validators = meta.validators();
    let mut headers = HeaderMap::new();
    for (name, value) in object.headers() {
        headers.append(name, value);
    }
    headers.insert(header::AGE, HeaderValue::from(object.age_seconds()));
    if meta.status != StatusCode::OK {
        return respond_whole(replica, object, found, method, headers);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let status_of_range = |start: u64, end: u64| -> CacheStatus {
        let chunks = chunks_covering(start, end, object.chunk_bytes);
        let ready = chunks.clone().filter(|&c| object.is_ready(c)).count() as u64;
        if found == Found::Discovered {
            CacheStatus::Miss
        } else if ready == chunks.end() - chunks.start() + 1 {
            match found {
                Found::Revalidated => CacheStatus::Revalidated,
                Found::Stale => CacheStatus::Stale,
                _ => CacheStatus::Hit,
            }
        } else if object.ready_chunks() == 0 {
            CacheStatus::Miss
        } else {
            CacheStatus::Partial
        }
    };

    match conditional::evaluate(method, request, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            // RFC 9110 §8.6: a 304 may only announce the length a 200 would.
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.total));
            return Some(finish(
                replica,
                StatusCode::NOT_MODIFIED,
                headers,
                CacheStatus::Hit,
                Body::empty(),
            ));
        }
        Precondition::Failed => {
            return Some(finish(
                replica,
                StatusCode::PRECONDITION_FAILED,
                headers,
                CacheStatus::Hit,
                Body::empty(),
            ));
        }
    }

    let total = meta.total;
    let wanted = if conditional::if_range_allows_partial(request, &validators) {
        range::resolve(request.get(header::RANGE), total)
    } else {
        RangeRequest::Full
    };
    let (status, start, len) = match wanted {
        RangeRequest::Full => (StatusCode::OK, 0, total),
        RangeRequest::Partial(r) => {
            headers.insert(header::CONTENT_RANGE, r.content_range(total));
            (StatusCode::PARTIAL_CONTENT, r.start, r.len())
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                range::unsatisfied_content_range(total),
            );
            headers.remove(header::CONTENT_TYPE);
            return Some(finish(
                replica,
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                CacheStatus::Hit,
                Body::empty(),
            ));
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if len == 0 {
        return Some(finish(
            replica,
            status,
            headers,
            CacheStatus::Hit,
            Body::empty(),
        ));
    }
    let end = start + len - 1;
    let cache_status = status_of_range(start, end);
    if cache_status != CacheStatus::Hit && replica.store.is_low_disk() && method == Method::GET {
        return None;
    }
    if method == Method::HEAD {
        return Some(finish(
            replica,
            status,
            headers,
            cache_status,
            Body::empty(),
        ));
    }
    let body = replica.pump.body(object.clone(), start, end);
    Some(finish(replica, status, headers, cache_status, body))
}

/// Replays a stored response other than a 200 (a 404, a 301...) whole.
/// Ranges are served only from a 200's content (RFC 9110 §14.2), and a
/// viewer's preconditions are ignored for a response that would not be a
/// success (§13.2.1); the rare stored 203 or 204 is replayed whole too.
fn respond_whole(
    replica: &crate::Shared,
    object: &Arc<Object>,
    found: Found,
    method: &Method,
    mut headers: HeaderMap,
) -> Option<Response> {
    let status = object.meta.status;
    let total = object.meta.total;
    let cache_status = match found {
        Found::Discovered => CacheStatus::Miss,
        Found::Revalidated => CacheStatus::Revalidated,
        Found::Stale => CacheStatus::Stale,
        _ if total > 0 && object.ready_chunks() == 0 => CacheStatus::Miss,
        _ => CacheStatus::Hit,
    };
    // RFC 9110 §8.6: no Content-Length on a 204.
    if status != StatusCode::NO_CONTENT {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    if total == 0 || method == Method::HEAD {
        return Some(finish(
            replica,
            status,
            headers,
            cache_status,
            Body::empty(),
        ));
    }
    if cache_status != CacheStatus::Hit && replica.store.is_low_disk() {
        return None;
    }
    let body = replica.pump.body(object.clone(), 0, total - 1);
    Some(finish(replica, status, headers, cache_status, body))
}

fn finish(
    replica: &crate::Shared,
    status: StatusCode,
    mut headers: HeaderMap,
    cache_status: CacheStatus,
    body: Body,
) -> Response {
    cache_status.apply(replica.name(), &mut headers);
    replica.store.stats().request(status, cache_status);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Forwards a request to the origin and streams the answer back, storing
/// nothing.
async fn pass(replica: &crate::Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let key = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let mut headers = parts.headers;
    origin_client::strip_hop_by_hop(&mut headers);
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    replica.store.stats().origin_requests.inc();
    let response = match replica
        .store
        .origin()
        .forward(parts.method.clone(), &key, headers, body)
        .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(key, method = %parts.method, error = %e, "origin unavailable for a passed request");
            let mut response = (StatusCode::BAD_GATEWAY, "origin unavailable\n").into_response();
            CacheStatus::Pass.apply(replica.name(), response.headers_mut());
            return response;
        }
    };
    let status = response.status();
    let mut headers = response.headers().clone();
    if !parts.method.is_safe() && (status.is_success() || status.is_redirection()) {
        invalidate_after_unsafe(replica, &key, authority.as_deref(), &headers);
    }
    origin_client::strip_hop_by_hop(&mut headers);
    for name in [
        "access-control-allow-origin",
        "access-control-expose-headers",
    ] {
        headers.remove(name);
    }
    let stats = replica.store.stats.clone();
    let stream = response
        .bytes_stream()
        // Empty chunks would go out as empty HTTP/2 DATA frames, which
        // clients count as abuse (h2 answers a stream of them with GOAWAY).
        .try_filter(|bytes| std::future::ready(!bytes.is_empty()))
        .map_ok(move |bytes| {
            stats.origin_bytes.inc_by(bytes.len() as u64);
            stats.bytes_served.inc_by(bytes.len() as u64);
            bytes
        });
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    finish(replica, status, headers, CacheStatus::Pass, body)
}

/// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the
/// stored responses of its URL, and of the URLs in `Location` and
/// `Content-Location` when they are on the same host.
fn invalidate_after_unsafe(
    replica: &crate::Shared,
    key: &str,
    authority: Option<&str>,
    response: &HeaderMap,
) {
    let path = key.split('?').next().unwrap_or(key);
    let mut purged = replica.store.purge(Some(path), None);
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(target) = response.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let same_host_path = match target.parse::<http::Uri>() {
            Ok(uri) if uri.authority().is_none() => Some(uri.path().to_owned()),
            Ok(uri) if uri.authority().map(|a| a.as_str()) == authority => {
                Some(uri.path().to_owned())
            }
            _ => None,
        };
        if let Some(target) = same_host_path.filter(|p| p.starts_with('/')) {
            purged += replica.store.purge(Some(&target), None);
        }
    }
    if purged > 0 {
        tracing::info!(key, purged, "invalidated after an unsafe method");
    }
}
