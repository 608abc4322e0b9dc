//! GET and HEAD of one file: validators, preconditions, ranges, streaming.
//!
//! The body is read in bounded blocks as the client takes them (back-pressure
//! through the socket), never whole. Length and validators come from the
//! opened file descriptor, so they describe exactly the bytes sent; if the
//! file shrinks while it is being sent the response is aborted rather than
//! ended short as if complete.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use vcdn_http::conditional::{self, ETag, Precondition, Validators};
use vcdn_http::range::{self, RangeRequest};

use crate::path::{self, Refusal};

/// Read size per block: large enough for few syscalls, small enough that a
/// thousand viewers stay in the tens of MiB.
const BLOCK_BYTES: usize = 256 * 1024;

/// The strong entity tag of a file: inode, size and modification time in
/// nanoseconds. Writing or replacing the file changes at least one of them.
pub fn etag(metadata: &std::fs::Metadata) -> ETag {
    let nanos = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    ETag::strong(format!(
        "{:x}-{:x}-{:x}",
        metadata.ino(),
        metadata.len(),
        nanos
    ))
}

/// A 404 that caches may remember for `not_found_cache_control`.
fn not_found(state: &crate::State) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, state.not_found_cache_control.clone())],
        "not found\n",
    )
        .into_response()
}

/// The file exists but cannot be read now: retry later, cache nothing.
fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::RETRY_AFTER, "1"),
        ],
        "temporarily unavailable\n",
    )
        .into_response()
}

pub(crate) async fn handler(
    State(state): State<Arc<crate::State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD, OPTIONS")],
            "method not allowed\n",
        )
            .into_response();
    }
    let root = state.root.clone();
    let request_path = uri.path().to_owned();
    let resolved = tokio::task::spawn_blocking(move || path::resolve(&root, &request_path)).await;
    let file_path = match resolved {
        Ok(Ok(p)) => p,
        Ok(Err(Refusal::BadRequest(why))) => {
            tracing::info!(path = uri.path(), why, "bad request path");
            return (StatusCode::BAD_REQUEST, format!("bad request: {why}\n")).into_response();
        }
        Ok(Err(Refusal::NotFound)) => return not_found(&state),
        Ok(Err(Refusal::Unavailable)) => return unavailable(),
        Err(e) => {
            tracing::error!(error = %e, "path resolution task failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };

    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) => {
            if path::is_absent(&e) {
                // Removed since it was resolved.
                return not_found(&state);
            }
            tracing::error!(path = %file_path.display(), error = %e, "cannot open file");
            return unavailable();
        }
    };
    let metadata = match file.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(path = %file_path.display(), error = %e, "cannot stat an open file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let len = metadata.len();
    let validators = Validators {
        etag: Some(etag(&metadata)),
        last_modified: metadata.modified().ok(),
    };

    let mut common = HeaderMap::new();
    if let Some(tag) = &validators.etag
        && let Ok(value) = HeaderValue::from_str(&tag.to_header_string())
    {
        common.insert(header::ETAG, value);
    }
    if let Some(modified) = validators.last_modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        common.insert(header::LAST_MODIFIED, value);
    }
    common.insert(header::CACHE_CONTROL, state.cache_control.clone());
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    match conditional::evaluate(&method, &headers, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            // RFC 9110 §8.6: a 304 may only announce the length a 200 would
            // have; without this the empty body would announce 0.
            common.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        Precondition::Failed => {
            return (
                StatusCode::PRECONDITION_FAILED,
                common,
                "precondition failed\n",
            )
                .into_response();
        }
    }

    common.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::content_type::for_path(&file_path)),
    );
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );

    let wanted = if conditional::if_range_allows_partial(&headers, &validators) {
        range::resolve(headers.get(header::RANGE), len)
    } else {
        RangeRequest::Full
    };
    let (status, start, count) = match wanted {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial(r) => {
            common.insert(header::CONTENT_RANGE, r.content_range(len));
            (StatusCode::PARTIAL_CONTENT, r.start, r.len())
        }
        RangeRequest::Unsatisfiable => {
            common.insert(header::CONTENT_RANGE, range::unsatisfied_content_range(len));
            common.remove(header::CONTENT_TYPE);
            return (StatusCode::RANGE_NOT_SATISFIABLE, common).into_response();
        }
    };
    common.insert(header::CONTENT_LENGTH, HeaderValue::from(count));

    if method == Method::HEAD {
        return (status, common).into_response();
    }
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::error!(path = %file_path.display(), error = %e, "seek failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let stream = ExactLength {
        inner: ReaderStream::with_capacity(file.take(count), BLOCK_BYTES),
        remaining: count,
    };
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = common;
    response
}

/// A body stream that must yield exactly `remaining` bytes; ending early is
/// an error, so the client sees an aborted response, not a short one.
struct ExactLength<S> {
    inner: S,
    remaining: u64,
}

impl<S> Stream for ExactLength<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) if self.remaining > 0 => {
                let missing = self.remaining;
                self.remaining = 0;
                tracing::warn!(
                    missing,
                    "file shrank while being sent; aborting the response"
                );
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))))
            }
            other => other,
        }
    }
}
