//! The serving layer every vcdn role stands on.
//!
//! - [`tls`]: the local CA and server certificates, rustls configuration.
//! - [`server`]: the listener: TLS, ALPN h2 + http/1.1 on one port, video-sized
//!   HTTP/2 windows, timeouts, limits and graceful shutdown.
//! - [`cors`] and [`access_log`]: the layers wrapped around every role's router.
//! - [`range`] and [`conditional`]: byte ranges and validators (RFC 9110 §13, §14),
//!   shared by the origin and the replica so both answer alike.
//! - [`shutdown`]: SIGINT/SIGTERM to a cancellation token.
//! - [`auth`]: bearer tokens for the admin APIs.

pub mod access_log;
pub mod auth;
pub mod conditional;
pub mod cors;
pub mod range;
pub mod server;
pub mod shutdown;
pub mod tls;

pub use server::{Limits, Server};
pub use tokio_util::sync::CancellationToken;

/// Errors of the serving layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What every listener of a process shares: the TLS identity and the limits.
#[derive(Clone)]
pub struct Serving {
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    pub limits: Limits,
}

impl Serving {
    /// The listener configuration for one address.
    pub fn at(&self, listen: std::net::SocketAddr) -> server::Config {
        server::Config {
            listen,
            limits: self.limits.clone(),
        }
    }
}

/// The `/healthz` answer shared by roles that report nothing more than
/// being up.
pub fn healthz(role: &'static str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "role": role }))
}
