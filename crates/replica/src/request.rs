//! What a viewer's request says about using the cache (RFC 9111 §5.2.1),
//! and the decision it leads to for a stored object.

use std::time::Duration;

use http::{HeaderMap, header};

use crate::freshness;
use crate::object::Object;

/// The request's cache directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-cache` (or `Pragma: no-cache` without Cache-Control): revalidate.
    pub no_cache: bool,
    /// `no-store`: store nothing of this exchange.
    pub no_store: bool,
    /// `max-age=N`: only a response at most N seconds old will do.
    pub max_age: Option<Duration>,
    /// `max-stale[=N]`: a stale response will do (`None` inside: any).
    pub max_stale: Option<Option<Duration>>,
    /// `min-fresh=N`: it must stay fresh for N more seconds.
    pub min_fresh: Option<Duration>,
    /// `only-if-cached`: never contact the origin (504 otherwise).
    pub only_if_cached: bool,
}

impl Directives {
    pub fn of(headers: &HeaderMap) -> Directives {
        let list = freshness::directives_of(headers, header::CACHE_CONTROL.as_str());
        let seconds = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
        };
        let mut d = Directives::default();
        for (name, value) in &list {
            match name.as_str() {
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                // An invalid max-age is treated as 0 (RFC 9111 §1.2.2).
                "max-age" => d.max_age = Some(seconds(value).unwrap_or_default()),
                "max-stale" => d.max_stale = Some(seconds(value)),
                "min-fresh" => d.min_fresh = Some(seconds(value).unwrap_or_default()),
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
        // RFC 9111 §5.4: Pragma: no-cache counts only without Cache-Control.
        if list.is_empty()
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
                })
        {
            d.no_cache = true;
        }
        d
    }
}

/// What to do with a stored object for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Serve it: fresh, and acceptable to the request.
    Fresh,
    /// Serve it stale: the request accepts that (`max-stale`).
    Stale,
    /// Serve it stale and revalidate in the background
    /// (`stale-while-revalidate`).
    StaleWhileRevalidate,
    /// Ask the origin first.
    Revalidate,
}

/// Decides how a stored object may answer a request.
pub fn decide(object: &Object, request: &Directives) -> Use {
    let (age, lifetime) = object.age_and_lifetime();
    let response_forbids_stale = freshness::forbids_stale(&object.header_map());
    if request.no_cache || request.max_age.is_some_and(|max| age > max) {
        return Use::Revalidate;
    }
    if let Some(min_fresh) = request.min_fresh
        && age + min_fresh > lifetime
    {
        return Use::Revalidate;
    }
    if age < lifetime {
        return Use::Fresh;
    }
    if response_forbids_stale {
        return Use::Revalidate;
    }
    let staleness = age - lifetime;
    match request.max_stale {
        Some(None) => return Use::Stale,
        Some(Some(max)) if staleness <= max => return Use::Stale,
        _ => {}
    }
    match freshness::stale_while_revalidate(&object.header_map()) {
        Some(window) if staleness < window => Use::StaleWhileRevalidate,
        _ => Use::Revalidate,
    }
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

    #[test]
    fn request_directives() {
        let d = Directives::of(&headers(&[(
            "cache-control",
            "max-age=5, max-stale, min-fresh=3, only-if-cached",
        )]));
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(3)));
        assert!(d.only_if_cached);
        assert!(Directives::of(&headers(&[("pragma", "no-cache")])).no_cache);
        let both = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=9")]);
        assert!(!Directives::of(&both).no_cache, "Pragma only counts alone");
        assert_eq!(
            Directives::of(&headers(&[("cache-control", "max-age=x")])).max_age,
            Some(Duration::ZERO)
        );
    }
}
