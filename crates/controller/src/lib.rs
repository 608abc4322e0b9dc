//! The controller role: vcdn's request router.
//!
//! It keeps a live set of replicas (from the configuration, joined by an
//! operator, or announced by heartbeat), probes their health and load, and
//! sends each viewer to one good replica: by a 302 (the default; the video
//! never passes through the controller) or by streaming the replica's
//! response through. When no replica is healthy it falls back to the origin.
//!
//! - [`registry`]: the replica set and each replica's counters.
//! - [`health`]: the probe loop, the health state machine, load and history.
//! - [`routing`]: round-robin, consistent hashing with bounded load,
//!   least-loaded; proxy stickiness.
//! - [`redirect`] and [`proxy`]: the two ways a viewer reaches a replica.
//! - [`api`]: `/api/route`, `/api/cluster`, `/healthz`; [`catalog`]: the
//!   origin's `/api/videos`, cached briefly.
//! - [`admin`]: the bearer-token API: join, leave, heartbeat, purge and
//!   prefetch fan-out.
//! - [`metrics`]: Prometheus `/metrics`.

pub mod admin;
pub mod api;
pub mod catalog;
pub mod config;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod redirect;
pub mod registry;
pub mod routing;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::StatusCode;
use tokio_util::sync::DropGuard;
use vcdn_http::{CancellationToken, Server, Serving};

pub use config::{Config, Mode, Strategy, Token};

use crate::registry::{Joined, Member, Registry, Source};

/// Errors of the controller role. Request errors say who caused them and
/// map to a status code in one place, [`IntoResponse`]; the body never
/// carries more than the client needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The client sent something malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The admin API is off: no token is configured.
    #[error("the admin API is disabled (no controller.admin_token)")]
    AdminDisabled,
    #[error("not found: {0}")]
    NotFound(String),
    /// No replica is healthy and origin fallback is off.
    #[error("no replica is available")]
    NoReplica,
    #[error("the replica set is full")]
    TooManyReplicas,
    /// A replica or the origin failed us.
    #[error("upstream {url}: {reason}")]
    Upstream { url: String, reason: String },
    #[error(transparent)]
    Http(#[from] vcdn_http::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::AdminDisabled | Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::NoReplica => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManyReplicas => StatusCode::CONFLICT,
            Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Error::Config(_) | Error::Http(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self {
            // Who failed and why is logged here, once; the client learns
            // only that the upstream failed.
            Error::Upstream { .. } | Error::Config(_) | Error::Http(_) => {
                tracing::warn!(error = %self, "request failed");
                "upstream failed".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            [(http::header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response();
        match self {
            Error::Unauthorized => {
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
            }
            // Replicas are probed every fraction of a second: one may be
            // back by the time the player retries.
            Error::NoReplica => {
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
            }
            _ => {}
        }
        response
    }
}

/// State shared by the controller's handlers and background tasks.
pub(crate) struct Shared {
    config: Config,
    /// The origin's normalized base URL.
    origin: String,
    registry: Registry,
    router: routing::Router,
    sticky: routing::Sticky,
    probe_client: reqwest::Client,
    upstream: reqwest::Client,
    catalog: catalog::Catalog,
    metrics: metrics::Metrics,
}

impl Shared {
    /// Adds a replica (or refreshes a known one) and starts probing a new one.
    fn join(
        self: &Arc<Self>,
        url: &str,
        source: Source,
        name: Option<String>,
    ) -> Result<(Arc<Member>, Joined), Error> {
        let url = config::base_url(url).map_err(Error::BadRequest)?;
        let (member, joined) = self
            .registry
            .add(&url, source, name)
            .map_err(|_| Error::TooManyReplicas)?;
        if joined == Joined::New {
            tracing::info!(replica = %url, source = ?source, "replica joined");
            tokio::spawn(health::probe_loop(self.clone(), member.clone()));
            self.health_changed();
        }
        Ok((member, joined))
    }

    /// Removes a replica; its probes stop.
    fn leave(&self, url: &str) -> Option<Arc<Member>> {
        let url = config::base_url(url).ok()?;
        let member = self.registry.remove(&url)?;
        self.metrics.forget(&member.url);
        self.health_changed();
        tracing::info!(replica = %url, "replica left");
        Some(member)
    }

    fn health_changed(&self) {
        self.registry.bump();
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let members = self.registry.members();
        let healthy = members.iter().filter(|m| m.in_rotation()).count();
        self.metrics.healthy_replicas.set(healthy as i64);
        self.metrics.known_replicas.set(members.len() as i64);
    }
}

/// A bound controller, ready to run.
pub struct Controller {
    server: Server,
    shared: Arc<Shared>,
    /// Stops the probe loops and the janitor when the controller is dropped
    /// or stops running.
    _tasks: DropGuard,
}

/// Binds the controller's listener and starts probing the configured
/// replicas.
pub async fn build(config: &Config, serving: &Serving) -> Result<Controller, Error> {
    config.validate()?;
    let ca_file = config.ca_file.as_deref();
    let probe_client = upstream::client(
        ca_file,
        Duration::from_millis(config.probe_timeout_ms),
        None,
    )?;
    let upstream = upstream::client(
        ca_file,
        Duration::from_millis(config.proxy_connect_timeout_ms),
        Some(Duration::from_millis(config.proxy_read_timeout_ms)),
    )?;
    let origin = config::base_url(&config.origin).map_err(Error::Config)?;
    let tasks = CancellationToken::new();
    let shared = Arc::new(Shared {
        origin: origin.clone(),
        registry: Registry::new(tasks.clone()),
        router: routing::Router::new(config.strategy, config.bounded_load_factor),
        sticky: routing::Sticky::new(
            Duration::from_millis(config.sticky_ttl_ms),
            config.sticky_max_entries,
        ),
        catalog: catalog::Catalog::new(
            upstream.clone(),
            &origin,
            Duration::from_millis(config.catalog_ttl_ms),
        ),
        probe_client,
        upstream,
        metrics: metrics::Metrics::new(),
        config: config.clone(),
    });
    for url in &config.replicas {
        shared.join(url, Source::Config, None)?;
    }
    tokio::spawn(janitor(shared.clone(), tasks.clone()));

    let router = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::handler))
        .route("/api/route/{*path}", get(api::route))
        .route("/api/route/", get(api::route))
        .route("/api/route", get(api::route))
        .route("/api/videos", get(catalog::handler))
        .route("/api/cluster", get(api::cluster))
        .route("/api", any(api::not_found))
        .route("/api/{*rest}", any(api::not_found))
        .route("/admin/replicas", post(admin::join).delete(admin::leave))
        .route("/admin/heartbeat", post(admin::heartbeat))
        .route("/admin/purge", post(admin::purge))
        .route("/admin/prefetch", post(admin::prefetch))
        .route("/admin", any(api::not_found))
        .route("/admin/{*rest}", any(api::not_found))
        .fallback(redirect::handler)
        .with_state(shared.clone());
    let server = Server::bind(
        "controller",
        &serving.at(config.listen),
        serving.tls.clone(),
        router,
    )
    .await?;
    Ok(Controller {
        server,
        shared,
        _tasks: tasks.drop_guard(),
    })
}

/// Expires silent heartbeat replicas and old sticky entries, once a second.
async fn janitor(shared: Arc<Shared>, tasks: CancellationToken) {
    let expiry = Duration::from_millis(shared.config.heartbeat_expiry_ms);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tasks.cancelled() => return,
            _ = tick.tick() => {}
        }
        for member in shared.registry.expire(expiry) {
            tracing::warn!(replica = %member.url, "replica stopped announcing itself; dropped");
            shared.metrics.forget(&member.url);
            shared.health_changed();
        }
        shared.sticky.prune();
    }
}

impl Controller {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A receiver that changes whenever a replica joins, leaves, or changes
    /// health, for callers that wait for the cluster to settle.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.registry.subscribe()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Controller { server, _tasks, .. } = self;
        let result = server.run(shutdown).await;
        drop(_tasks);
        Ok(result?)
    }
}
