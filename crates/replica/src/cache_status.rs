//! How a response was served, told to the viewer (`X-Cache`, RFC 9211
//! `Cache-Status`), to the logs and to the metrics from one value.

use http::{HeaderMap, HeaderValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Every byte of the response was on disk when it was asked for.
    Hit,
    /// The object was unknown: discovered and filled for this request.
    Miss,
    /// The object was known but some chunks of the range were fetched.
    Partial,
    /// Stale, confirmed unchanged by the origin (a 304), then served.
    Revalidated,
    /// Stale, served because the origin could not be reached.
    Stale,
    /// Not handled by the cache (unsafe method, uncacheable response).
    Pass,
}

impl CacheStatus {
    pub fn x_cache(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Partial => "PARTIAL",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Pass => "PASS",
        }
    }

    /// The RFC 9211 parameters after the cache's name.
    fn cache_status_params(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "fwd=uri-miss; stored",
            CacheStatus::Partial => "fwd=partial; stored",
            CacheStatus::Revalidated => "fwd=stale; fwd-status=304",
            CacheStatus::Stale => "hit; detail=origin-unreachable",
            CacheStatus::Pass => "fwd=bypass",
        }
    }

    /// Adds `X-Cache`, `Cache-Status` and `X-Served-By`.
    pub fn apply(self, name: &str, headers: &mut HeaderMap) {
        headers.insert("x-cache", HeaderValue::from_static(self.x_cache()));
        if let Ok(value) = HeaderValue::from_str(&format!("{name}; {}", self.cache_status_params()))
        {
            headers.insert("cache-status", value);
        }
        if let Ok(value) = HeaderValue::from_str(name) {
            headers.insert("x-served-by", value);
        }
    }
}
