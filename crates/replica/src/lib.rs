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

pub mod admin;
mod background;
pub mod cache_status;
pub mod discovery;
pub mod disk;
pub mod eviction;
pub mod fill;
pub mod freshness;
pub mod object;
pub mod origin_client;
pub mod reader;
pub mod request;
pub mod respond;
pub mod stats;
pub mod store;
pub mod variant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use vcdn_http::{CancellationToken, Server, Serving};

/// The `[replica]` section of `vcdn.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (HTTPS, HTTP/2 and HTTP/1.1).
    pub listen: SocketAddr,
    /// An extra plain-HTTP listener, off by default: for a replica behind a
    /// TLS terminator, or benchmarks beside caches without TLS.
    pub plain_listen: Option<SocketAddr>,
    /// Name in `X-Served-By` and `Cache-Status`; `vcdn-<port>` by default.
    pub name: Option<String>,
    /// Base URL of the origin, e.g. `https://origin.example:8080`.
    pub origin: String,
    /// CA certificates (PEM) trusted for the origin's TLS certificate.
    pub origin_ca_file: Option<PathBuf>,
    /// Folder of the disk cache; what it holds survives restarts.
    pub cache_dir: PathBuf,
    /// Most bytes of chunks kept on disk (chunks being written come on top).
    pub cache_max_bytes: u64,
    /// Below this much free disk nothing new is stored: requests for what
    /// is not cached pass through to the origin instead.
    pub min_free_disk_bytes: u64,
    /// `s3-fifo` (scan-resistant, the default) or `lru`.
    pub eviction: eviction::Policy,
    /// Bearer token of the admin API; the API is off without one.
    pub admin_token: Option<String>,
    /// The controller to announce this replica to every second.
    pub controller: Option<String>,
    /// Bearer token for the controller's heartbeat endpoint.
    pub controller_token: Option<String>,
    /// This replica's URL as viewers reach it, sent in heartbeats;
    /// `https://localhost:<port>` by default.
    pub public_url: Option<String>,
    /// Size of the chunks objects are stored and fetched in.
    pub chunk_bytes: u64,
    /// Lifetime of responses that state none (no `max-age`, `s-maxage` or
    /// `Expires`) where RFC 9111 allows a heuristic one: heuristically
    /// cacheable statuses (200, 404, 301...) or `public`. Off by default:
    /// then a tenth of the time since `Last-Modified`, at most a day.
    pub default_ttl_ms: Option<u64>,
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
            plain_listen: None,
            name: None,
            origin: "https://localhost:8080".into(),
            origin_ca_file: None,
            cache_dir: PathBuf::from("cache"),
            cache_max_bytes: 10 * 1024 * 1024 * 1024,
            min_free_disk_bytes: 1024 * 1024 * 1024,
            eviction: eviction::Policy::S3Fifo,
            admin_token: None,
            controller: None,
            controller_token: None,
            public_url: None,
            chunk_bytes: 1024 * 1024,
            default_ttl_ms: None,
            read_ahead_chunks: 4,
            read_block_bytes: 32 * 1024,
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
        if self.cache_max_bytes < store::disk_footprint(0, self.chunk_bytes) {
            return Err(Error::Config(
                "replica.cache_max_bytes must hold at least one chunk (and 8 KiB for its metadata)"
                    .into(),
            ));
        }
        if let Some(url) = &self.controller
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(Error::Config(
                "replica.controller must be an http(s):// URL".into(),
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
    admin_token: Option<String>,
    jobs: admin::Jobs,
}

impl Shared {
    fn name(&self) -> &str {
        self.name.get().map_or("vcdn", String::as_str)
    }
}

/// A bound replica, ready to run.
pub struct Replica {
    server: Server,
    plain: Option<Server>,
    name: String,
    shared: Arc<Shared>,
    config: Config,
}

/// Opens the cache (rebuilding its index from disk) and binds the
/// replica's listener.
pub async fn build(config: &Config, serving: &Serving) -> Result<Replica, Error> {
    config.validate()?;
    let origin = origin_client::OriginClient::new(
        &config.origin,
        config.origin_ca_file.as_deref(),
        Duration::from_millis(config.origin_connect_timeout_ms),
        Duration::from_millis(config.origin_read_timeout_ms),
    )?;
    let stats = Arc::new(stats::Stats::new());
    let open = {
        let (dir, chunk, max, policy) = (
            config.cache_dir.clone(),
            config.chunk_bytes,
            config.cache_max_bytes,
            config.eviction,
        );
        let stats = stats.clone();
        let default_ttl = config.default_ttl_ms.map(Duration::from_millis);
        tokio::task::spawn_blocking(move || {
            store::Store::open(dir, chunk, max, policy, origin, stats)
                .map(|store| store.with_default_ttl(default_ttl))
        })
    };
    let store = match open.await {
        Ok(Ok(store)) => Arc::new(store),
        Ok(Err(source)) => {
            return Err(Error::CacheDir {
                path: config.cache_dir.clone(),
                source,
            });
        }
        Err(e) => {
            return Err(Error::CacheDir {
                path: config.cache_dir.clone(),
                source: std::io::Error::other(e),
            });
        }
    };
    // Know the disk's state before the first request.
    background::check_disk(&store, config);
    let shared = Arc::new(Shared {
        name: OnceLock::new(),
        pump: reader::Pump {
            store: store.clone(),
            read_block_bytes: config.read_block_bytes,
            read_ahead_chunks: config.read_ahead_chunks,
        },
        store,
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        jobs: admin::Jobs::default(),
    });
    let admin = Router::new()
        .route("/purge", post(admin::purge))
        .route("/prefetch", post(admin::prefetch))
        .route("/prefetch/{id}", get(admin::prefetch_progress))
        .route("/cache", get(admin::list))
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            admin::authorize,
        ));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/admin", admin)
        .fallback(respond::handler)
        .with_state(shared.clone());
    let plain = match config.plain_listen {
        Some(addr) => Some(Server::bind_plain("replica", &serving.at(addr), router.clone()).await?),
        None => None,
    };
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
    Ok(Replica {
        server,
        plain,
        name,
        shared,
        config: config.clone(),
    })
}

async fn healthz(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = serde_json::json!({
        "status": "ok",
        "role": "replica",
        "name": shared.name(),
    });
    if let (Some(map), Ok(serde_json::Value::Object(load))) = (
        body.as_object_mut(),
        serde_json::to_value(shared.store.stats().load()),
    ) {
        map.extend(load);
    }
    axum::Json(body).into_response()
}

async fn metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.store.stats().encode(),
    )
        .into_response()
}

impl Replica {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plain-HTTP listener's address, when configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().map(Server::local_addr)
    }

    /// Serves until `shutdown`, with the background work of a replica:
    /// per-second rates, the free-disk guard and the controller heartbeat.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let url =
            self.config.public_url.clone().unwrap_or_else(|| {
                format!("https://localhost:{}", self.server.local_addr().port())
            });
        let background = tokio::spawn(background::run(
            self.shared.store.clone(),
            self.config.clone(),
            self.name.clone(),
            url,
            shutdown.clone(),
        ));
        let grace = self.server.limits().shutdown_grace_ms;
        let plain = self
            .plain
            .map(|plain| tokio::spawn(plain.run(shutdown.clone())));
        let result = self.server.run(shutdown).await;
        if let Some(plain) = plain {
            let _ = plain.await;
        }
        background.abort();
        // Let chunks being fetched land on disk, within the grace period,
        // so a restart does not fetch them again.
        let finished = self.shared.store.fills_finished();
        if tokio::time::timeout(Duration::from_millis(grace), finished)
            .await
            .is_err()
        {
            tracing::warn!("fills still running at shutdown; their chunks are dropped");
        }
        Ok(result?)
    }
}
