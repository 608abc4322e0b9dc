//! One access-log line per request, written when the response body ends.
//!
//! The line is logged when the body is finished or dropped, so it records the
//! bytes actually sent and whether the response completed: a viewer who
//! closes the tab mid-video shows up as `complete=false`, and a response
//! aborted because the origin failed is told apart from a finished one.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};

/// The client address, put into each request's extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The role name, for log lines of a process that runs several roles.
#[derive(Debug, Clone, Copy)]
pub struct Role(pub &'static str);

/// Middleware that wraps the response body in a [`LoggedBody`].
pub async fn layer(request: Request, next: Next) -> Response {
    let entry = Entry {
        role: request.extensions().get::<Role>().map_or("-", |r| r.0),
        peer: request.extensions().get::<PeerAddr>().map(|p| p.0),
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        start: Instant::now(),
        status: StatusCode::OK,
        bytes: 0,
        complete: false,
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let entry = Entry {
        status: parts.status,
        ..entry
    };
    let expected = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| http_body::Body::size_hint(&body).exact());
    Response::from_parts(
        parts,
        Body::new(LoggedBody {
            inner: body,
            entry: Some(entry),
            expected,
        }),
    )
}

struct Entry {
    role: &'static str,
    peer: Option<SocketAddr>,
    method: Method,
    uri: Uri,
    version: Version,
    start: Instant,
    status: StatusCode,
    bytes: u64,
    complete: bool,
}

impl Entry {
    fn log(&self) {
        // Health probes and metric scrapes arrive every second from every
        // controller and scraper; they would drown the viewers' lines.
        let routine = matches!(self.uri.path(), "/healthz" | "/metrics");
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: "vcdn::access",
                    $level,
                    role = self.role,
                    peer = ?self.peer,
                    method = %self.method,
                    path = %self.uri.path(),
                    version = ?self.version,
                    status = self.status.as_u16(),
                    bytes = self.bytes,
                    complete = self.complete,
                    ms = self.start.elapsed().as_millis() as u64,
                )
            };
        }
        if routine {
            line!(tracing::Level::DEBUG);
        } else {
            line!(tracing::Level::INFO);
        }
    }
}

/// A response body that counts the bytes it yields and logs on its end.
pub struct LoggedBody {
    inner: Body,
    entry: Option<Entry>,
    /// The body's length when known in advance (Content-Length).
    expected: Option<u64>,
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(entry)) = (frame.data_ref(), this.entry.as_mut()) {
                    entry.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(mut entry) = this.entry.take() {
                    entry.complete = true;
                    entry.log();
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            // hyper stops polling a body once it has sent its announced
            // length (and drops empty ones, HEAD, 304, unpolled): that is
            // still a complete response.
            entry.complete = self.inner.is_end_stream() || self.expected == Some(entry.bytes);
            entry.log();
        }
    }
}
