//! How long a stored response may be reused without asking the origin
//! (RFC 9111 §4.2): its freshness lifetime and its age.
//!
//! The lifetime comes from `s-maxage`, then `max-age`, then `Expires`
//! against `Date`. Without any of them, and only for a status code that is
//! heuristically cacheable or a response marked `public` (RFC 9111 §4.2.2),
//! a heuristic lifetime: the operator's default TTL when one is configured,
//! else a tenth of the time since Last-Modified, at most a day. Otherwise
//! zero: the response is revalidated on every use. `no-cache` makes it zero
//! too. The age follows §4.2.3, so time spent in other caches (`Age`) and on
//! the way counts against the lifetime.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};
use tokio::time::Instant;

/// Longest heuristic lifetime.
const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// When the response was received (monotonic).
    pub received: Instant,
    /// Its corrected initial age (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    /// Its freshness lifetime.
    pub lifetime: Duration,
}

/// Status codes whose responses may be stored and given a heuristic
/// lifetime without explicit freshness (RFC 9110 §15.1; 206 as part of a
/// 200).
pub const HEURISTICALLY_CACHEABLE: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// What may stand in for an explicit lifetime (RFC 9111 §4.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heuristic {
    /// Whether a heuristic lifetime is allowed at all for this response.
    pub allowed: bool,
    /// The operator's default lifetime, used instead of the Last-Modified
    /// heuristic when configured.
    pub default_ttl: Option<Duration>,
}

impl Heuristic {
    /// The heuristic that applies to a response with this status and
    /// these headers, given the configured default TTL.
    pub fn for_response(
        status: StatusCode,
        headers: &HeaderMap,
        default_ttl: Option<Duration>,
    ) -> Heuristic {
        let public = directives(headers).iter().any(|(n, _)| n == "public");
        Heuristic {
            allowed: public || HEURISTICALLY_CACHEABLE.contains(&status.as_u16()),
            default_ttl,
        }
    }
}

/// Whether the response states its own lifetime (`s-maxage`, `max-age`
/// or `Expires`, valid or not), so no heuristic applies.
pub fn is_explicit(headers: &HeaderMap) -> bool {
    headers.contains_key(header::EXPIRES)
        || directives(headers)
            .iter()
            .any(|(n, _)| n == "s-maxage" || n == "max-age")
}

impl Freshness {
    /// Freshness of a response received now, for a request sent at `requested`.
    pub fn of(headers: &HeaderMap, requested: Instant, heuristic: Heuristic) -> Freshness {
        let received = Instant::now();
        let now = SystemTime::now();
        let date = date(headers, header::DATE);
        let apparent_age = date
            .and_then(|d| now.duration_since(d).ok())
            .unwrap_or_default();
        let age_value = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_default();
        let response_delay = received.saturating_duration_since(requested);
        Freshness {
            received,
            initial_age: apparent_age.max(age_value + response_delay),
            lifetime: lifetime(headers, date.unwrap_or(now), heuristic),
        }
    }

    pub fn age(&self) -> Duration {
        self.initial_age + self.received.elapsed()
    }

    pub fn is_fresh(&self) -> bool {
        self.age() < self.lifetime
    }
}

/// The field this cache takes its directives from: a vcdn-targeted field,
/// then `CDN-Cache-Control` (RFC 9213), which when present replace
/// `Cache-Control` for this cache; else `Cache-Control`.
pub const TARGETED_FIELD: &str = "vcdn-cache-control";
pub const CDN_FIELD: &str = "cdn-cache-control";

/// The lowercase caching directives of a response for this cache, with
/// their values (see [`TARGETED_FIELD`]).
pub fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    let field = [TARGETED_FIELD, CDN_FIELD]
        .into_iter()
        .find(|name| headers.contains_key(*name))
        .unwrap_or(header::CACHE_CONTROL.as_str());
    directives_of(headers, field)
}

/// The lowercase directives of one Cache-Control-like field.
pub fn directives_of(headers: &HeaderMap, field: &str) -> Vec<(String, Option<String>)> {
    headers
        .get_all(field)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            Some(match d.split_once('=') {
                Some((name, value)) => (
                    name.trim().to_ascii_lowercase(),
                    Some(value.trim().trim_matches('"').to_owned()),
                ),
                None => (d.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

fn seconds(value: &Option<String>) -> Option<Duration> {
    value
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The freshness lifetime of a response whose Date is `date`.
pub fn lifetime(headers: &HeaderMap, date: SystemTime, heuristic: Heuristic) -> Duration {
    let directives = directives(headers);
    let find = |name: &str| directives.iter().find(|(n, _)| n == name);
    if find("no-cache").is_some_and(|(_, v)| v.is_none()) {
        return Duration::ZERO;
    }
    if let Some((_, value)) = find("s-maxage") {
        return seconds(value).unwrap_or_default();
    }
    if let Some((_, value)) = find("max-age") {
        return seconds(value).unwrap_or_default();
    }
    if headers.contains_key(header::EXPIRES) {
        // An invalid Expires means "already expired" (RFC 9111 §5.3).
        return self::date(headers, header::EXPIRES)
            .and_then(|expires| expires.duration_since(date).ok())
            .unwrap_or_default();
    }
    if !heuristic.allowed {
        return Duration::ZERO;
    }
    if let Some(ttl) = heuristic.default_ttl {
        return ttl;
    }
    match self::date(headers, header::LAST_MODIFIED) {
        Some(modified) => date
            .duration_since(modified)
            .map(|since| (since / 10).min(MAX_HEURISTIC))
            .unwrap_or_default(),
        None => Duration::ZERO,
    }
}

/// The `stale-while-revalidate` window (RFC 5861 §3), if any.
pub fn stale_while_revalidate(headers: &HeaderMap) -> Option<Duration> {
    directive_seconds(headers, "stale-while-revalidate")
}

/// The `stale-if-error` window (RFC 5861 §4), if any.
pub fn stale_if_error(headers: &HeaderMap) -> Option<Duration> {
    directive_seconds(headers, "stale-if-error")
}

fn directive_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    directives(headers)
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| seconds(v))
}

/// Whether the origin forbids serving this response stale, even when it
/// cannot be reached (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8).
pub fn forbids_stale(headers: &HeaderMap) -> bool {
    directives(headers).iter().any(|(n, _)| {
        n == "must-revalidate" || n == "proxy-revalidate" || n == "no-cache" || n == "s-maxage"
    })
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn http_date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    const OK: Heuristic = Heuristic {
        allowed: true,
        default_ttl: None,
    };

    fn lifetime(headers: &HeaderMap, date: SystemTime) -> Duration {
        super::lifetime(headers, date, OK)
    }

    #[test]
    fn shared_max_age_wins() {
        let now = SystemTime::now();
        let h = headers(&[("cache-control", "max-age=10, s-maxage=100")]);
        assert_eq!(lifetime(&h, now), Duration::from_secs(100));
        let h = headers(&[("cache-control", "public, max-age=60")]);
        assert_eq!(lifetime(&h, now), Duration::from_secs(60));
        let h = headers(&[("cache-control", "max-age=60, no-cache")]);
        assert_eq!(lifetime(&h, now), Duration::ZERO);
    }

    #[test]
    fn expires_counts_from_date_and_invalid_means_expired() {
        let now = SystemTime::now();
        let later = http_date(now + Duration::from_secs(300));
        let h = headers(&[("expires", &later)]);
        let got = lifetime(&h, now);
        assert!(got > Duration::from_secs(298) && got <= Duration::from_secs(300));
        assert_eq!(lifetime(&headers(&[("expires", "0")]), now), Duration::ZERO);
    }

    #[test]
    fn heuristic_needs_last_modified() {
        let now = SystemTime::now();
        let modified = http_date(now - Duration::from_secs(1000));
        let got = lifetime(&headers(&[("last-modified", &modified)]), now);
        assert!(got >= Duration::from_secs(99) && got <= Duration::from_secs(101));
        assert_eq!(lifetime(&headers(&[]), now), Duration::ZERO);
    }

    #[test]
    fn age_header_counts_against_the_lifetime() {
        let h = headers(&[("cache-control", "max-age=60"), ("age", "100")]);
        assert!(!Freshness::of(&h, Instant::now(), OK).is_fresh());
        let h = headers(&[("cache-control", "max-age=60"), ("age", "10")]);
        assert!(Freshness::of(&h, Instant::now(), OK).is_fresh());
    }

    #[test]
    fn heuristics_only_for_heuristically_cacheable_or_public_responses() {
        let now = SystemTime::now();
        let modified = http_date(now - Duration::from_secs(1000));
        let h = headers(&[("last-modified", &modified)]);
        let found = Heuristic::for_response(StatusCode::NOT_FOUND, &h, None);
        assert!(super::lifetime(&h, now, found) > Duration::from_secs(90));
        let redirect = Heuristic::for_response(StatusCode::FOUND, &h, None);
        assert_eq!(super::lifetime(&h, now, redirect), Duration::ZERO);
        let public = headers(&[("last-modified", &modified), ("cache-control", "public")]);
        let redirect = Heuristic::for_response(StatusCode::FOUND, &public, None);
        assert!(super::lifetime(&public, now, redirect) > Duration::from_secs(90));
    }

    #[test]
    fn a_default_ttl_replaces_the_heuristic_but_never_an_explicit_lifetime() {
        let now = SystemTime::now();
        let ttl = Some(Duration::from_secs(30));
        let none = headers(&[]);
        let ok = Heuristic::for_response(StatusCode::OK, &none, ttl);
        assert_eq!(super::lifetime(&none, now, ok), Duration::from_secs(30));
        let modified = http_date(now - Duration::from_secs(100_000));
        let h = headers(&[("last-modified", &modified)]);
        assert_eq!(super::lifetime(&h, now, ok), Duration::from_secs(30));
        let h = headers(&[("cache-control", "max-age=5")]);
        assert_eq!(super::lifetime(&h, now, ok), Duration::from_secs(5));
        let h = headers(&[("cache-control", "no-cache")]);
        assert_eq!(super::lifetime(&h, now, ok), Duration::ZERO);
        let redirect = Heuristic::for_response(StatusCode::TEMPORARY_REDIRECT, &none, ttl);
        assert_eq!(super::lifetime(&none, now, redirect), Duration::ZERO);
        assert!(is_explicit(&headers(&[("expires", "0")])));
        assert!(!is_explicit(&headers(&[("cache-control", "public")])));
    }
}
