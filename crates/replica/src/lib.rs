//! The replica role: an edge cache in front of an origin.
//!
//! A request is answered from the disk cache, or fetched from the origin and
//! streamed to every viewer who wants it while it is written to disk. Objects
//! are stored as fixed-size chunks fetched with range requests, so a seek
//! into a cold video costs one chunk, and every chunk is checked against the
//! object's version before it is served as a hit.
//!
//! - [`respond`]: the request driver (lookup → fill → respond, or pass).
//! - [`store`]: the index, discovery of new objects, starting fills.
//! - [`object`]: one object's metadata and chunk states.
//! - [`fill`]: writing an origin response into chunk files.
//! - [`freshness`]: how long a stored response may be reused (RFC 9111 §4.2).
//! - [`reader`]: streaming a range to a viewer, following filling chunks.
//! - [`origin_client`]: requests to the origin and checks of its answers.
//! - [`cache_status`]: `X-Cache` / `Cache-Status` for responses and logs.

pub mod cache_status;
pub mod fill;
pub mod freshness;
pub mod object;
pub mod origin_client;
pub mod reader;
pub mod respond;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use vcdn_http::{CancellationToken, Server, Serving};

/// The `[replica]` section of `vcdn.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Name in `X-Served-By` and `Cache-Status`; `vcdn-<port>` by default.
    pub name: Option<String>,
    /// Base URL of the origin, e.g. `https://origin.example:8080`.
    pub origin: String,
    /// CA certificates (PEM) trusted for the origin's TLS certificate.
    pub origin_ca_file: Option<PathBuf>,
    /// Folder of the disk cache. Its `objects/` is emptied on start.
    pub cache_dir: PathBuf,
    /// Size of the chunks objects are stored and fetched in.
    pub chunk_bytes: u64,
    /// Chunks fetched ahead of a sequential viewer, within its range.
    pub read_ahead_chunks: u64,
    /// Largest block read from disk and sent to a viewer at once.
    pub read_block_bytes: u64,
    pub origin_connect_timeout_ms: u64,
    /// A fill fails when the origin sends nothing for this long.
    pub origin_read_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            name: None,
            origin: "https://localhost:8080".into(),
            origin_ca_file: None,
            cache_dir: PathBuf::from("cache"),
            chunk_bytes: 1024 * 1024,
            read_ahead_chunks: 4,
            read_block_bytes: 64 * 1024,
            origin_connect_timeout_ms: 5_000,
            origin_read_timeout_ms: 30_000,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.origin.starts_with("https://") || self.origin.starts_with("http://")) {
            return Err(Error::Config(
                "replica.origin must be an http(s):// URL".into(),
            ));
        }
        if self.chunk_bytes < 64 * 1024 || self.chunk_bytes > 1024 * 1024 * 1024 {
            return Err(Error::Config(
                "replica.chunk_bytes must be between 64 KiB and 1 GiB".into(),
            ));
        }
        if self.read_block_bytes == 0 || self.read_block_bytes > 16 * 1024 * 1024 {
            return Err(Error::Config(
                "replica.read_block_bytes must be between 1 and 16 MiB".into(),
            ));
        }
        if self.origin_connect_timeout_ms == 0 || self.origin_read_timeout_ms == 0 {
            return Err(Error::Config(
                "replica origin timeouts must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Errors of the replica role.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cache folder {path}: {source}")]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] vcdn_http::Error),
}

/// State shared by the replica's handlers.
pub(crate) struct Shared {
    name: OnceLock<String>,
    store: Arc<store::Store>,
    pump: reader::Pump,
}

impl Shared {
    fn name(&self) -> &str {
        self.name.get().map_or("vcdn", String::as_str)
    }
}

/// A bound replica, ready to run.
pub struct Replica {
    server: Server,
    name: String,
}

/// Prepares the cache folder and binds the replica's listener.
pub async fn build(config: &Config, serving: &Serving) -> Result<Replica, Error> {
    config.validate()?;
    let objects_dir = prepare_cache_dir(&config.cache_dir)?;
    let origin = origin_client::OriginClient::new(
        &config.origin,
        config.origin_ca_file.as_deref(),
        Duration::from_millis(config.origin_connect_timeout_ms),
        Duration::from_millis(config.origin_read_timeout_ms),
    )?;
    let store = Arc::new(store::Store::new(objects_dir, config.chunk_bytes, origin));
    let shared = Arc::new(Shared {
        name: OnceLock::new(),
        pump: reader::Pump {
            store: store.clone(),
            read_block_bytes: config.read_block_bytes,
            read_ahead_chunks: config.read_ahead_chunks,
        },
        store,
    });
    let router = Router::new()
        .route("/healthz", get(|| async { vcdn_http::healthz("replica") }))
        .fallback(respond::handler)
        .with_state(shared.clone());
    let server = Server::bind(
        "replica",
        &serving.at(config.listen),
        serving.tls.clone(),
        router,
    )
    .await?;
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("vcdn-{}", server.local_addr().port()));
    let _ = shared.name.set(name.clone());
    Ok(Replica { server, name })
}

/// Empties the cache's `objects/` folder: a chunk left by an earlier run
/// is not trusted until the index can be rebuilt from verified metadata.
fn prepare_cache_dir(cache_dir: &std::path::Path) -> Result<PathBuf, Error> {
    let io = |source| Error::CacheDir {
        path: cache_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(io)?;
    let objects = cache_dir.join("objects");
    if objects.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let trash = cache_dir.join(format!("trash-{stamp}"));
        std::fs::rename(&objects, &trash).map_err(io)?;
    }
    // Remove earlier runs' leftovers in the background: a big cache takes a
    // while to delete and the replica can serve meanwhile.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(cache_dir)
        .map_err(io)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("trash-"))
        .map(|e| e.path())
        .collect();
    if !leftovers.is_empty() {
        std::thread::spawn(move || {
            for dir in leftovers {
                let _ = std::fs::remove_dir_all(dir);
            }
        });
    }
    std::fs::create_dir_all(&objects).map_err(io)?;
    Ok(objects)
}

impl Replica {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.server.run(shutdown).await?)
    }
}
