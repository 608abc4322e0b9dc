//! The controller's JSON API for players and the dashboard.
//!
//! - `GET /api/route/<path>`: where a new viewer of `<path>` would go, for
//!   players that route themselves:
//!   `{"replica":"vcdn-8081","url":"https://localhost:8081/x.mp4",
//!   "strategy":"round-robin","fallback":false}`. It counts as a route.
//! - `GET /api/cluster`: every replica's health, load, cache statistics
//!   and recent history, and the cluster's origin offload. With
//!   `?changed_after=<generation>` (the `generation` of a previous answer)
//!   it waits up to a second for a replica to change state or membership,
//!   so a dashboard polling this way shows a replica going down as soon as
//!   the controller sees it, and otherwise refreshes every second.
//! - `GET /healthz`: the controller is up (even with no healthy replica:
//!   it still answers, falling back to the origin).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::header;
use serde::{Deserialize, Serialize};

use crate::health::{Rates, Report, Sample, unix_ms};
use crate::redirect::{Target, target_url};
use crate::registry::{Member, Source};
use crate::{Error, Shared};

#[derive(Debug, Serialize)]
pub struct Route {
    /// The replica's name, or `origin` when falling back.
    pub replica: String,
    /// The full URL to fetch, query included.
    pub url: String,
    pub strategy: &'static str,
    /// True when no replica was healthy and the origin was chosen.
    pub fallback: bool,
}

pub(crate) async fn route(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let uri = request.uri();
    let Some(path) = uri
        .path()
        .strip_prefix("/api/route")
        .filter(|p| p.len() > 1)
    else {
        return Error::BadRequest("usage: /api/route/<path>".into()).into_response();
    };
    let target = match shared.pick(path) {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let routed_uri: http::Uri = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
    .parse()
    .unwrap_or_else(|_| http::Uri::from_static("/"));
    shared.routed(&target);
    let route = Route {
        replica: target.name(),
        url: target_url(&shared, &target, &routed_uri),
        strategy: shared.router.strategy().as_str(),
        fallback: matches!(target, Target::Origin),
    };
    no_store(Json(route))
}

/// One replica in `/api/cluster`.
#[derive(Debug, Serialize)]
pub struct ReplicaView {
    pub url: String,
    pub name: String,
    pub source: Source,
    /// `unknown`, `healthy`, `overloaded` or `down`.
    pub state: &'static str,
    /// Whether it gets new viewers.
    pub healthy: bool,
    /// When the state last changed.
    pub state_since_unix_ms: u64,
    pub last_probe_unix_ms: Option<u64>,
    pub probe_latency_ms: Option<f64>,
    /// Why it is down or overloaded.
    pub reason: Option<String>,
    pub probe_failures_total: u64,
    /// Viewers this controller sent here.
    pub routed_total: u64,
    pub active_streams: Option<u64>,
    pub requests_per_sec: Option<f64>,
    pub bytes_out_per_sec: Option<f64>,
    pub cache_bytes: Option<u64>,
    pub cache_max_bytes: Option<u64>,
    pub cache_fullness: Option<f64>,
    pub hit_ratio: Option<f64>,
    pub requests_total: Option<u64>,
    pub hits_total: Option<u64>,
    pub bytes_served_total: Option<u64>,
    pub origin_bytes_total: Option<u64>,
    /// Oldest first, one sample per `history_interval_ms`.
    pub history: Vec<Sample>,
}

impl ReplicaView {
    fn of(member: &Member) -> ReplicaView {
        // Read before taking the health lock, which these take too.
        let name = member.name();
        let source = member.source();
        let routed_total = member.routed_total();
        member.with_health(|h| {
            let report = h.report.clone().unwrap_or_default();
            let rates: Rates = h.rates;
            ReplicaView {
                url: member.url.clone(),
                name,
                source,
                state: h.state_name(),
                healthy: h.in_rotation(),
                state_since_unix_ms: unix_ms(h.since),
                last_probe_unix_ms: h.last_probe.map(unix_ms),
                probe_latency_ms: h.latency.map(|l| l.as_secs_f64() * 1000.0),
                reason: h.last_error.clone().or_else(|| h.overloaded.clone()),
                probe_failures_total: h.probe_failures_total,
                routed_total,
                active_streams: report.active_streams,
                requests_per_sec: rates.requests_per_sec,
                bytes_out_per_sec: rates.bytes_out_per_sec,
                cache_bytes: report.cache_bytes,
                cache_max_bytes: report.cache_max_bytes,
                cache_fullness: report.cache_fullness(),
                hit_ratio: Report::hit_ratio(&report),
                requests_total: report.requests_total,
                hits_total: report.hits_total,
                bytes_served_total: report.bytes_served_total,
                origin_bytes_total: report.origin_bytes_total,
                history: h.history.iter().cloned().collect(),
            }
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    /// Counts changes of membership and replica state; pass it back as
    /// `changed_after` to wait for the next one.
    pub generation: u64,
    pub generated_unix_ms: u64,
    pub strategy: &'static str,
    pub mode: &'static str,
    pub origin: String,
    pub fallback_to_origin: bool,
    /// Replicas in rotation.
    pub healthy: usize,
    pub total: usize,
    /// Bytes served by the replicas that reported both counters.
    pub bytes_served_total: u64,
    pub origin_bytes_total: u64,
    /// `1 - origin_bytes / bytes_served` over the cluster; null before any
    /// byte was served.
    pub origin_offload: Option<f64>,
    pub replicas: Vec<ReplicaView>,
}

/// Longest a `changed_after` request is held.
const LONG_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
pub(crate) struct ClusterQuery {
    changed_after: Option<u64>,
}

pub(crate) async fn cluster(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ClusterQuery>,
) -> Response {
    let mut changes = shared.registry.subscribe();
    if let Some(after) = query.changed_after {
        let changed = changes.wait_for(|generation| *generation != after);
        let _ = tokio::time::timeout(LONG_POLL, changed).await;
    }
    let generation = *changes.borrow_and_update();
    let replicas: Vec<ReplicaView> = shared
        .registry
        .members()
        .iter()
        .map(|m| ReplicaView::of(m))
        .collect();
    let (served, from_origin) = replicas
        .iter()
        .filter_map(|r| Some((r.bytes_served_total?, r.origin_bytes_total?)))
        .fold((0u64, 0u64), |(s, o), (rs, ro)| {
            (s.saturating_add(rs), o.saturating_add(ro))
        });
    let cluster = Cluster {
        generation,
        generated_unix_ms: unix_ms(SystemTime::now()),
        strategy: shared.router.strategy().as_str(),
        mode: shared.config.mode.as_str(),
        origin: shared.origin.clone(),
        fallback_to_origin: shared.config.fallback_to_origin,
        healthy: replicas.iter().filter(|r| r.healthy).count(),
        total: replicas.len(),
        bytes_served_total: served,
        origin_bytes_total: from_origin,
        origin_offload: (served > 0).then(|| 1.0 - from_origin as f64 / served as f64),
        replicas,
    };
    no_store(Json(cluster))
}

pub(crate) async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let members = shared.registry.members();
    no_store(Json(serde_json::json!({
        "status": "ok",
        "role": "controller",
        "replicas": members.len(),
        "healthy": members.iter().filter(|m| m.in_rotation()).count(),
    })))
}

/// Unknown paths under the controller's own prefixes are 404, never routed.
pub(crate) async fn not_found(request: Request) -> Response {
    Error::NotFound(request.uri().path().to_owned()).into_response()
}

/// Routing answers change with every probe: never cache them.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}
