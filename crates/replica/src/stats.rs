//! What the replica reports: Prometheus metrics at `/metrics` and the load
//! summary at `/healthz` that the controller routes by.
//!
//! Metric names are stable and carry their unit (`_bytes`, `_seconds`);
//! counters get `_total` from the encoder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::cache_status::CacheStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status: u16,
    /// `hit`, `miss`, `partial` or `pass`.
    cache: String,
}

pub struct Stats {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    pub bytes_served: Counter,
    pub origin_requests: Counter,
    pub origin_bytes: Counter,
    pub chunks_filled: Counter,
    pub fills_in_progress: Gauge,
    pub evictions: Counter,
    pub cache_bytes: Gauge,
    pub cache_capacity: Gauge,
    pub cache_objects: Gauge,
    pub index_rebuild_seconds: Gauge<f64, AtomicU64>,
    pub active_streams: Gauge,
    bytes_out_per_second: Gauge<f64, AtomicU64>,
    requests_per_second: Gauge<f64, AtomicU64>,
    pub low_disk: Gauge,
    requests_total: AtomicU64,
    hits_total: AtomicU64,
}

/// The load summary in `/healthz`.
#[derive(Debug, Serialize)]
pub struct Load {
    pub active_streams: i64,
    pub bytes_out_per_sec: f64,
    pub requests_per_sec: f64,
    pub cache_bytes: i64,
    pub cache_max_bytes: i64,
    pub cache_fullness: f64,
    pub cache_objects: i64,
    pub hit_ratio: f64,
    pub requests_total: u64,
    pub hits_total: u64,
    pub bytes_served_total: u64,
    pub origin_bytes_total: u64,
    pub low_disk: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let mut registry = Registry::with_prefix("vcdn_replica");
        let stats = Stats {
            registry: Registry::default(),
            requests: Family::default(),
            bytes_served: Counter::default(),
            origin_requests: Counter::default(),
            origin_bytes: Counter::default(),
            chunks_filled: Counter::default(),
            fills_in_progress: Gauge::default(),
            evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_capacity: Gauge::default(),
            cache_objects: Gauge::default(),
            index_rebuild_seconds: Gauge::default(),
            active_streams: Gauge::default(),
            bytes_out_per_second: Gauge::default(),
            requests_per_second: Gauge::default(),
            low_disk: Gauge::default(),
            requests_total: AtomicU64::new(0),
            hits_total: AtomicU64::new(0),
        };
        registry.register(
            "requests",
            "Requests answered, by status code and cache status",
            stats.requests.clone(),
        );
        registry.register(
            "served_bytes",
            "Body bytes sent to viewers",
            stats.bytes_served.clone(),
        );
        registry.register(
            "origin_requests",
            "Requests sent to the origin",
            stats.origin_requests.clone(),
        );
        registry.register(
            "origin_bytes",
            "Body bytes received from the origin",
            stats.origin_bytes.clone(),
        );
        registry.register(
            "chunks_filled",
            "Chunks fetched, checked and stored",
            stats.chunks_filled.clone(),
        );
        registry.register(
            "fills_in_progress",
            "Origin responses being written to the cache",
            stats.fills_in_progress.clone(),
        );
        registry.register(
            "evictions",
            "Chunks evicted to stay within the cache size",
            stats.evictions.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes of stored chunks",
            stats.cache_bytes.clone(),
        );
        registry.register(
            "cache_capacity_bytes",
            "Configured cache size",
            stats.cache_capacity.clone(),
        );
        registry.register(
            "cache_objects",
            "Objects in the index",
            stats.cache_objects.clone(),
        );
        registry.register(
            "index_rebuild_seconds",
            "Time taken to rebuild the index from disk at start",
            stats.index_rebuild_seconds.clone(),
        );
        registry.register(
            "active_streams",
            "Responses currently streaming to viewers",
            stats.active_streams.clone(),
        );
        registry.register(
            "served_bytes_per_second",
            "Bytes sent to viewers per second, over the last second",
            stats.bytes_out_per_second.clone(),
        );
        registry.register(
            "requests_per_second",
            "Requests per second, over the last second",
            stats.requests_per_second.clone(),
        );
        registry.register(
            "low_disk",
            "1 while free disk is below the minimum and nothing new is cached",
            stats.low_disk.clone(),
        );
        Stats { registry, ..stats }
    }

    /// Counts one answered request.
    pub fn request(&self, status: http::StatusCode, cache: CacheStatus) {
        self.requests
            .get_or_create(&RequestLabels {
                status: status.as_u16(),
                cache: cache.x_cache().to_ascii_lowercase(),
            })
            .inc();
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        // A revalidated or stale answer is served from the cache too: no
        // body came from the origin.
        if matches!(
            cache,
            CacheStatus::Hit | CacheStatus::Revalidated | CacheStatus::Stale
        ) {
            self.hits_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn load(&self) -> Load {
        let requests = self.requests_total.load(Ordering::Relaxed);
        let hits = self.hits_total.load(Ordering::Relaxed);
        let capacity = self.cache_capacity.get();
        Load {
            active_streams: self.active_streams.get(),
            bytes_out_per_sec: self.bytes_out_per_second.get(),
            requests_per_sec: self.requests_per_second.get(),
            cache_bytes: self.cache_bytes.get(),
            cache_max_bytes: capacity,
            cache_fullness: if capacity > 0 {
                self.cache_bytes.get() as f64 / capacity as f64
            } else {
                0.0
            },
            cache_objects: self.cache_objects.get(),
            hit_ratio: if requests > 0 {
                hits as f64 / requests as f64
            } else {
                0.0
            },
            requests_total: requests,
            hits_total: hits,
            bytes_served_total: self.bytes_served.get(),
            origin_bytes_total: self.origin_bytes.get(),
            low_disk: self.low_disk.get() > 0,
        }
    }

    /// Updates the per-second rates; call once per `interval`.
    pub fn sample(&self, last: &mut (u64, u64), interval: Duration) {
        let bytes = self.bytes_served.get();
        let requests = self.requests_total.load(Ordering::Relaxed);
        let seconds = interval.as_secs_f64().max(1e-3);
        self.bytes_out_per_second
            .set(bytes.saturating_sub(last.0) as f64 / seconds);
        self.requests_per_second
            .set(requests.saturating_sub(last.1) as f64 / seconds);
        *last = (bytes, requests);
    }
}

/// Counts a viewer's stream as active while it lives.
pub struct StreamGuard<'a>(&'a Stats);

impl<'a> StreamGuard<'a> {
    pub fn new(stats: &'a Stats) -> StreamGuard<'a> {
        stats.active_streams.inc();
        StreamGuard(stats)
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.active_streams.dec();
    }
}
