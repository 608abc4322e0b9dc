//! The controller's Prometheus metrics, served at `/metrics`.
//!
//! Each controller owns its registry, so several in one process (tests)
//! keep separate counts. Names are stable: `vcdn_controller_*`; counters
//! get `_total` from the encoder.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `replica` label's value for requests sent to the origin.
pub const ORIGIN: &str = "origin";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    replica: String,
    strategy: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    replica: String,
}

pub struct Metrics {
    registry: Registry,
    routes: Family<RouteLabels, Counter>,
    probes: Family<ReplicaLabels, Counter>,
    probe_failures: Family<ReplicaLabels, Counter>,
    proxy_failovers: Family<ReplicaLabels, Counter>,
    proxy_resumes: Family<ReplicaLabels, Counter>,
    unavailable: Counter,
    pub healthy_replicas: Gauge,
    pub known_replicas: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vcdn_controller");
        let routes = Family::<RouteLabels, Counter>::default();
        let probes = Family::<ReplicaLabels, Counter>::default();
        let probe_failures = Family::<ReplicaLabels, Counter>::default();
        let proxy_failovers = Family::<ReplicaLabels, Counter>::default();
        let proxy_resumes = Family::<ReplicaLabels, Counter>::default();
        let unavailable = Counter::default();
        let healthy_replicas = Gauge::default();
        let known_replicas = Gauge::default();
        registry.register(
            "routes",
            "Viewers sent to a replica (or the origin), by replica, strategy and mode",
            routes.clone(),
        );
        registry.register("probes", "Health probes sent, by replica", probes.clone());
        registry.register(
            "probe_failures",
            "Health probes that failed or found the replica not ok, by replica",
            probe_failures.clone(),
        );
        registry.register(
            "proxy_failovers",
            "Proxied requests a replica failed before the first byte, by replica",
            proxy_failovers.clone(),
        );
        registry.register(
            "proxy_resumes",
            "Proxied bodies picked up mid-way after their upstream failed, by the upstream that took over",
            proxy_resumes.clone(),
        );
        registry.register(
            "unavailable",
            "Requests answered 503 because no replica was healthy and origin fallback is off",
            unavailable.clone(),
        );
        registry.register(
            "healthy_replicas",
            "Replicas in rotation (healthy and not overloaded)",
            healthy_replicas.clone(),
        );
        registry.register(
            "replicas",
            "Replicas known, in rotation or not",
            known_replicas.clone(),
        );
        Metrics {
            registry,
            routes,
            probes,
            probe_failures,
            proxy_failovers,
            proxy_resumes,
            unavailable,
            healthy_replicas,
            known_replicas,
        }
    }

    pub fn route(&self, replica: &str, strategy: &'static str, mode: &'static str) {
        self.routes
            .get_or_create(&RouteLabels {
                replica: replica.to_owned(),
                strategy,
                mode,
            })
            .inc();
    }

    pub fn probe(&self, replica: &str, failed: bool) {
        let labels = ReplicaLabels {
            replica: replica.to_owned(),
        };
        self.probes.get_or_create(&labels).inc();
        if failed {
            self.probe_failures.get_or_create(&labels).inc();
        }
    }

    pub fn proxy_resume(&self, replica: &str) {
        self.proxy_resumes
            .get_or_create(&ReplicaLabels {
                replica: replica.to_owned(),
            })
            .inc();
    }

    pub fn proxy_failover(&self, replica: &str) {
        self.proxy_failovers
            .get_or_create(&ReplicaLabels {
                replica: replica.to_owned(),
            })
            .inc();
    }

    pub fn unavailable(&self) {
        self.unavailable.inc();
    }

    /// Drops the per-replica series of a replica that left, so a cluster
    /// with churn does not accumulate dead series.
    pub fn forget(&self, replica: &str) {
        let labels = ReplicaLabels {
            replica: replica.to_owned(),
        };
        self.probes.remove(&labels);
        self.probe_failures.remove(&labels);
        self.proxy_failovers.remove(&labels);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `GET /metrics`.
pub(crate) async fn handler(
    axum::extract::State(shared): axum::extract::State<std::sync::Arc<crate::Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    shared.update_gauges();
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}
