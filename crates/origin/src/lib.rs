//! The origin role: the source of truth every cache depends on.
//!
//! It serves the files of one folder (`videos/` by default, subfolders
//! included, so HLS and DASH trees work) over HTTPS with byte ranges, strong
//! validators and conditional requests, and lists them in a JSON catalog.
//!
//! - [`path`]: turns a request path into a file inside the folder, or refuses.
//! - [`file`]: answers GET and HEAD for one file (ranges, 304, 412, 416).
//! - [`catalog`]: `GET /api/videos`, rebuilt from the folder on each request.
//! - [`mp4`]: reads a video's duration from its `moov/mvhd` box.
//! - [`content_type`]: media types by file extension.

pub mod catalog;
pub mod content_type;
pub mod file;
pub mod mp4;
pub mod path;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use vcdn_http::{CancellationToken, Server, Serving};

/// The `[origin]` section of `vcdn.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (HTTPS, HTTP/2 and HTTP/1.1).
    pub listen: SocketAddr,
    /// An extra plain-HTTP listener, off by default: for caches in front
    /// that cannot speak TLS to their backend (Varnish, in benchmarks).
    pub plain_listen: Option<SocketAddr>,
    /// The folder whose files are served.
    pub videos_dir: PathBuf,
    /// `Cache-Control` sent with every file, telling caches how long they
    /// may reuse it without asking again.
    pub cache_control: String,
    /// `Cache-Control` sent with a 404: how long caches may remember that
    /// a video does not exist (so a crowd asking for it costs one request),
    /// which is also how long a newly added video may stay unseen there.
    pub not_found_cache_control: String,
    /// Most files listed by the catalog; a walk stops there.
    pub catalog_max_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plain_listen: None,
            videos_dir: PathBuf::from("videos"),
            cache_control: "public, max-age=3600".into(),
            not_found_cache_control: "max-age=10".into(),
            catalog_max_files: 10_000,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [
            ("cache_control", &self.cache_control),
            ("not_found_cache_control", &self.not_found_cache_control),
        ] {
            http::HeaderValue::from_str(value)
                .map_err(|_| Error::Config(format!("origin.{name} is not a valid header value")))?;
        }
        if self.catalog_max_files == 0 {
            return Err(Error::Config(
                "origin.catalog_max_files must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Errors of the origin role.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("videos folder {path}: {source}")]
    VideosDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] vcdn_http::Error),
}

fn header_value(text: &str) -> Result<http::HeaderValue, Error> {
    http::HeaderValue::from_str(text)
        .map_err(|_| Error::Config(format!("{text:?} is not a valid header value")))
}

/// State shared by the origin's handlers.
pub(crate) struct State {
    /// The videos folder, canonicalized once so that containment checks
    /// compare real paths.
    pub root: PathBuf,
    pub cache_control: http::HeaderValue,
    pub not_found_cache_control: http::HeaderValue,
    pub catalog: catalog::Catalog,
}

/// A bound origin, ready to run.
pub struct Origin {
    server: Server,
    plain: Option<Server>,
}

/// Binds the origin's listener. The videos folder must exist.
pub async fn build(config: &Config, serving: &Serving) -> Result<Origin, Error> {
    config.validate()?;
    let root = std::fs::canonicalize(&config.videos_dir).map_err(|source| Error::VideosDir {
        path: config.videos_dir.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(Error::VideosDir {
            path: config.videos_dir.clone(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let state = Arc::new(State {
        catalog: catalog::Catalog::new(root.clone(), config.catalog_max_files),
        root,
        cache_control: header_value(&config.cache_control)?,
        not_found_cache_control: header_value(&config.not_found_cache_control)?,
    });
    let router = Router::new()
        .route("/healthz", get(|| async { vcdn_http::healthz("origin") }))
        .route("/api/videos", get(catalog::handler))
        .fallback(file::handler)
        .with_state(state);
    let plain = match config.plain_listen {
        Some(addr) => Some(Server::bind_plain("origin", &serving.at(addr), router.clone()).await?),
        None => None,
    };
    let server = Server::bind(
        "origin",
        &serving.at(config.listen),
        serving.tls.clone(),
        router,
    )
    .await?;
    Ok(Origin { server, plain })
}

impl Origin {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The plain-HTTP listener's address, when configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().map(Server::local_addr)
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let plain = self
            .plain
            .map(|plain| tokio::spawn(plain.run(shutdown.clone())));
        let result = self.server.run(shutdown).await;
        if let Some(plain) = plain {
            let _ = plain.await;
        }
        Ok(result?)
    }
}
