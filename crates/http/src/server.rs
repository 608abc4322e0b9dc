//! The HTTPS listener every role runs.
//!
//! One port speaks HTTP/2 and HTTP/1.1 (chosen by ALPN) over TLS. Around the
//! role's router it adds the access log and CORS layers, and around each
//! connection the limits a public server needs: a TLS handshake timeout, a
//! header read timeout, an idle timeout, a cap on header size, on HTTP/2
//! streams and on open connections. HTTP/2 windows are sized for video:
//! hyper's 64 KiB default caps a stream at one window per round trip.
//!
//! Shutdown is graceful: when the token is cancelled the listener closes,
//! every connection finishes its in-flight responses (HTTP/2 sends GOAWAY,
//! HTTP/1.1 closes after the current response), and whatever is still open
//! after `shutdown_grace_ms` is closed.
//!
//! A connection ends with a lingering close (`linger`): the write side is
//! shut first and the peer's last bytes are read (for at most 2 s), so the
//! kernel does not answer them with a reset that would destroy the end of a
//! response the client has not read yet. Only connections still open when
//! the shutdown grace period ends are closed without it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::Error;
use crate::access_log::{self, PeerAddr, Role};

/// Where a role listens and with which limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub limits: Limits,
}

/// Timeouts and limits shared by every listener (the `[server]` section of
/// `vcdn.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A client must finish the TLS handshake within this time.
    pub tls_handshake_timeout_ms: u64,
    /// An HTTP/1.1 client must send a request's headers within this time.
    pub header_read_timeout_ms: u64,
    /// A connection with no bytes read or written for this long is closed
    /// (gracefully first; forcibly after a second idle period).
    pub idle_timeout_ms: u64,
    /// How long shutdown waits for in-flight responses.
    pub shutdown_grace_ms: u64,
    /// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: u32,
    /// Most header fields in an HTTP/1.1 request.
    pub max_headers: usize,
    /// Most open connections; further clients wait in the accept queue.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 flow-control window per stream.
    pub h2_stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection.
    pub h2_connection_window_bytes: u32,
    /// Data hyper buffers per HTTP/2 stream before applying back-pressure.
    pub h2_max_send_buffer_bytes: u32,
    /// Origins allowed by CORS; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            h2_max_concurrent_streams: 256,
            h2_stream_window_bytes: 4 * 1024 * 1024,
            h2_connection_window_bytes: 16 * 1024 * 1024,
            h2_max_send_buffer_bytes: 256 * 1024,
            cors_allowed_origins: vec!["*".into()],
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_headers", self.max_headers as u64),
            (
                "h2_max_concurrent_streams",
                self.h2_max_concurrent_streams as u64,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("server.{name} must be positive")));
            }
        }
        if self.max_header_bytes < 8192 {
            return Err(Error::Config(
                "server.max_header_bytes must be at least 8192".into(),
            ));
        }
        // RFC 9113 §6.9.2: windows are at most 2^31-1 and at least the
        // initial 65,535.
        for (name, value) in [
            ("h2_stream_window_bytes", self.h2_stream_window_bytes),
            (
                "h2_connection_window_bytes",
                self.h2_connection_window_bytes,
            ),
        ] {
            if !(65_535..=i32::MAX as u32).contains(&value) {
                return Err(Error::Config(format!(
                    "server.{name} must be between 65535 and 2147483647"
                )));
            }
        }
        crate::cors::layer(&self.cors_allowed_origins).map(drop)
    }
}

/// A bound listener, ready to [`run`](Server::run).
pub struct Server {
    role: &'static str,
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
}

impl Server {
    /// Binds the listener. Port 0 picks a free port; [`local_addr`](Self::local_addr)
    /// tells which.
    pub async fn bind(
        role: &'static str,
        config: &Config,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
    ) -> Result<Server, Error> {
        Server::bind_with(role, config, Some(TlsAcceptor::from(tls)), router).await
    }

    /// Binds a plain-HTTP listener (HTTP/1.1 and prior-knowledge HTTP/2),
    /// for deployments behind a TLS terminator and for benchmarks beside
    /// caches that cannot speak TLS. Never the default.
    pub async fn bind_plain(
        role: &'static str,
        config: &Config,
        router: Router,
    ) -> Result<Server, Error> {
        Server::bind_with(role, config, None, router).await
    }

    async fn bind_with(
        role: &'static str,
        config: &Config,
        acceptor: Option<TlsAcceptor>,
        router: Router,
    ) -> Result<Server, Error> {
        config.limits.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr()?;
        let router = router
            .layer(crate::cors::layer(&config.limits.cors_allowed_origins)?)
            .layer(axum::middleware::from_fn(access_log::layer));
        Ok(Server {
            role,
            listener,
            local_addr,
            acceptor,
            router,
            limits: config.limits.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Accepts and serves connections until `shutdown` is cancelled, then
    /// drains them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let scheme = if self.acceptor.is_some() {
            "https, h2 + http/1.1"
        } else {
            "plain http"
        };
        tracing::info!(role = self.role, addr = %self.local_addr, "listening ({scheme})");
        let builder = Arc::new(self.builder());
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let limits = Arc::new(self.limits);
        let mut connections = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed
                },
                _ = shutdown.cancelled() => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and similar: back off
                        // briefly instead of spinning on the error.
                        tracing::warn!(role = self.role, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                _ = shutdown.cancelled() => break,
            };
            let connection = Connection {
                role: self.role,
                peer,
                acceptor: self.acceptor.clone(),
                builder: builder.clone(),
                router: self.router.clone(),
                limits: limits.clone(),
                shutdown: shutdown.clone(),
            };
            connections.spawn(async move {
                connection.serve(tcp).await;
                drop(permit);
            });
        }
        drop(self.listener);

        let grace = Duration::from_millis(limits.shutdown_grace_ms);
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                role = self.role,
                open = connections.len(),
                "shutdown grace period over; closing the remaining connections"
            );
            connections.shutdown().await;
        }
        tracing::info!(role = self.role, "stopped");
        Ok(())
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let limits = &self.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
            .max_buf_size(limits.max_header_bytes as usize)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .initial_stream_window_size(limits.h2_stream_window_bytes)
            .initial_connection_window_size(limits.h2_connection_window_bytes)
            .max_send_buf_size(limits.h2_max_send_buffer_bytes as usize)
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes);
        // No HTTP/2 keep-alive pings: their bytes would count as activity
        // and keep idle connections open forever. The idle timeout closes
        // connections that move nothing, dead peers included.
        builder
    }
}

/// One accepted TCP connection and what it needs to be served.
struct Connection {
    role: &'static str,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn serve(self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = self.acceptor.clone() else {
            return self.serve_io(tcp).await;
        };
        let handshake = Duration::from_millis(self.limits.tls_handshake_timeout_ms);
        match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => self.serve_io(tls).await,
            Ok(Err(e)) => {
                tracing::debug!(role = self.role, peer = %self.peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(role = self.role, peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    async fn serve_io<T>(self, stream: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let (give_back, returned) = oneshot::channel();
        let io = TokioIo::new(Tracked {
            inner: Some(stream),
            activity: activity.clone(),
            give_back: Some(give_back),
        });
        let (peer, role, router) = (self.peer, self.role, self.router.clone());
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            request.extensions_mut().insert(Role(role));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });

        let mut connection = Box::pin(self.builder.serve_connection(io, service));
        let idle = Duration::from_millis(self.limits.idle_timeout_ms);
        let mut draining = false;
        loop {
            let deadline = activity.last() + idle;
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(role, peer = %peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.shutdown.cancelled(), if !draining => {
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + idle > Instant::now() {
                        continue;
                    }
                    if draining {
                        tracing::debug!(role, peer = %peer, "closing a connection idle while draining");
                        break;
                    }
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                    activity.touch();
                }
            }
        }
        drop(connection);
        if let Ok(stream) = returned.await {
            linger(stream).await;
        }
    }
}

/// How long a closing connection keeps reading what its peer still sends.
const LINGER: Duration = Duration::from_secs(2);

/// Closes a connection the way a client can rely on: the write side first
/// (TLS close_notify, then FIN), then whatever the peer still sends is read
/// and dropped until it closes too, or for at most [`LINGER`].
///
/// Closing a socket with unread bytes in its receive buffer makes the kernel
/// answer with a TCP reset, and a reset makes the peer's kernel discard data
/// it has received but its application has not read yet. An HTTP/2 client
/// sends WINDOW_UPDATE frames until its last byte, so without this the tail
/// of a response finished during a graceful shutdown (or just before an idle
/// close) could be lost on the client's side.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut stream: T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER, async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// When a connection last moved a byte, in milliseconds since `base`.
#[derive(Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// An I/O stream that records activity on every successful read or write.
/// When hyper drops it, the stream goes back to the connection's task for
/// [`linger`].
struct Tracked<T> {
    inner: Option<T>,
    activity: Activity,
    give_back: Option<oneshot::Sender<T>>,
}

impl<T> Tracked<T> {
    fn inner(&mut self) -> Pin<&mut T>
    where
        T: Unpin,
    {
        Pin::new(self.inner.as_mut().expect("present until dropped"))
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        if let (Some(inner), Some(give_back)) = (self.inner.take(), self.give_back.take()) {
            let _ = give_back.send(inner);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.inner().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner().poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner().poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}
