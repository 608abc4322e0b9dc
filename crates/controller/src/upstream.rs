//! The HTTPS clients the controller talks to replicas and the origin with.
//!
//! They trust only the cluster's CA (`ca_file`) when one is given, else
//! the system's trusted roots (for replicas with public certificates).

use std::path::Path;
use std::time::Duration;

use crate::Error;

/// A pooled client (HTTP/2 by ALPN, video-sized windows, no redirects
/// followed, no proxy from the environment).
pub fn client(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .http2_initial_stream_window_size(4 * 1024 * 1024)
        .http2_initial_connection_window_size(16 * 1024 * 1024)
        .user_agent(concat!("vcdn-controller/", env!("CARGO_PKG_VERSION")));
    if let Some(read_timeout) = read_timeout {
        builder = builder.read_timeout(read_timeout);
    }
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file)
            .map_err(|e| Error::Config(format!("reading CA {}: {e}", ca_file.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("CA {}: {e}", ca_file.display())))?;
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}
