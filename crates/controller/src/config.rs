//! The `[controller]` section of `vcdn.toml`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How a replica is chosen for a new viewer.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Each new viewer goes to the next replica in turn (the prototype's).
    #[default]
    RoundRobin,
    /// Rendezvous hashing on the video, so each video is cached on few
    /// replicas, with bounded load so a hot video cannot overload one.
    ConsistentHash,
    /// The replica with the fewest active streams.
    LeastLoaded,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::ConsistentHash => "consistent-hash",
            Strategy::LeastLoaded => "least-loaded",
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" => Ok(Strategy::RoundRobin),
            "consistent-hash" => Ok(Strategy::ConsistentHash),
            "least-loaded" => Ok(Strategy::LeastLoaded),
            other => Err(format!(
                "unknown strategy `{other}` (round-robin, consistent-hash, least-loaded)"
            )),
        }
    }
}

/// How a viewer reaches the chosen replica.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A 302 to the replica: the video's bytes never pass the controller.
    #[default]
    Redirect,
    /// The controller streams the replica's response through.
    Proxy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redirect => "redirect",
            Mode::Proxy => "proxy",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redirect" => Ok(Mode::Redirect),
            "proxy" => Ok(Mode::Proxy),
            other => Err(format!("unknown mode `{other}` (redirect, proxy)")),
        }
    }
}

/// A bearer token. Its `Debug` never shows the value, so a config dump in
/// a log does not leak it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Shortest admin token accepted: a guessable token would make the admin
/// API (which can purge every cache) an open door.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The `[controller]` section of `vcdn.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base URLs of the replicas known from the start. More join at run
    /// time through the admin API or by heartbeat.
    pub replicas: Vec<String>,
    /// Base URL of the origin: the catalog's source and the fallback when
    /// no replica is healthy.
    pub origin: String,
    /// CA certificates (PEM) trusted for the replicas' and the origin's TLS.
    pub ca_file: Option<PathBuf>,
    pub strategy: Strategy,
    pub mode: Mode,
    /// Send viewers to the origin when no replica is healthy, instead of
    /// answering 503.
    pub fallback_to_origin: bool,

    /// Time between two health probes of one replica.
    pub probe_interval_ms: u64,
    /// A probe that takes longer than this fails.
    pub probe_timeout_ms: u64,
    /// Consecutive failed probes that take a healthy replica out of rotation.
    pub probe_fall: u32,
    /// Consecutive good probes that bring a down replica back.
    pub probe_rise: u32,

    /// A replica reporting at least this many active streams is overloaded
    /// and gets no new viewers. Unset: no limit.
    pub max_active_streams: Option<u64>,
    /// A replica sending at least this many bytes per second is overloaded.
    pub max_bytes_out_per_sec: Option<u64>,
    /// A replica whose cache is at least this full (0..1) is overloaded.
    pub max_cache_fullness: Option<f64>,

    /// Consistent hashing's load bound: a replica whose load would exceed
    /// this times the mean passes the viewer to the next in the video's
    /// ranking. At least 1; a large value turns the bound off.
    pub bounded_load_factor: f64,

    /// Proxy mode: how long a viewer's requests for one video keep going to
    /// the same replica after the last one.
    pub sticky_ttl_ms: u64,
    /// Proxy mode: most remembered (viewer, video) pairs.
    pub sticky_max_entries: usize,
    pub proxy_connect_timeout_ms: u64,
    /// Proxy mode: a replica must send the response head and first body
    /// bytes within this time, or the next replica is tried.
    pub proxy_first_byte_timeout_ms: u64,
    /// Proxy mode: a response body that moves nothing for this long is cut.
    pub proxy_read_timeout_ms: u64,
    /// Proxy mode: replicas tried per request before the origin fallback.
    pub proxy_max_attempts: u32,

    /// How long the origin's catalog is reused by `/api/videos`.
    pub catalog_ttl_ms: u64,
    /// Time between two samples of a replica's recent history.
    pub history_interval_ms: u64,
    /// Samples kept per replica for the dashboard.
    pub history_samples: usize,

    /// Bearer token of the controller's admin API; the API is off without it.
    pub admin_token: Option<Token>,
    /// Bearer token sent to the replicas' admin API (purge, prefetch);
    /// `admin_token` when unset.
    pub replica_admin_token: Option<Token>,
    /// A replica that joined by heartbeat is dropped after announcing
    /// nothing for this long.
    pub heartbeat_expiry_ms: u64,
    /// Time limit of one admin call to a replica.
    pub admin_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            replicas: (8081..=8083)
                .map(|port| format!("https://localhost:{port}"))
                .collect(),
            origin: "https://localhost:8080".into(),
            ca_file: None,
            strategy: Strategy::RoundRobin,
            mode: Mode::Redirect,
            fallback_to_origin: true,
            probe_interval_ms: 500,
            probe_timeout_ms: 400,
            probe_fall: 2,
            probe_rise: 2,
            max_active_streams: None,
            max_bytes_out_per_sec: None,
            max_cache_fullness: None,
            bounded_load_factor: 1.25,
            sticky_ttl_ms: 300_000,
            sticky_max_entries: 100_000,
            proxy_connect_timeout_ms: 1_000,
            proxy_first_byte_timeout_ms: 5_000,
            proxy_read_timeout_ms: 30_000,
            proxy_max_attempts: 3,
            catalog_ttl_ms: 2_000,
            history_interval_ms: 1_000,
            history_samples: 120,
            admin_token: None,
            replica_admin_token: None,
            heartbeat_expiry_ms: 10_000,
            admin_timeout_ms: 10_000,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        let config = |m: String| Err(Error::Config(m));
        for url in &self.replicas {
            base_url(url).map_err(|e| Error::Config(format!("controller.replicas: {e}")))?;
        }
        base_url(&self.origin).map_err(|e| Error::Config(format!("controller.origin: {e}")))?;
        let positive = [
            ("probe_interval_ms", self.probe_interval_ms),
            ("probe_timeout_ms", self.probe_timeout_ms),
            ("probe_fall", self.probe_fall.into()),
            ("probe_rise", self.probe_rise.into()),
            ("sticky_ttl_ms", self.sticky_ttl_ms),
            ("sticky_max_entries", self.sticky_max_entries as u64),
            ("proxy_connect_timeout_ms", self.proxy_connect_timeout_ms),
            (
                "proxy_first_byte_timeout_ms",
                self.proxy_first_byte_timeout_ms,
            ),
            ("proxy_read_timeout_ms", self.proxy_read_timeout_ms),
            ("proxy_max_attempts", self.proxy_max_attempts.into()),
            ("history_interval_ms", self.history_interval_ms),
            ("heartbeat_expiry_ms", self.heartbeat_expiry_ms),
            ("admin_timeout_ms", self.admin_timeout_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return config(format!("controller.{name} must be positive"));
            }
        }
        if !(1..=3600).contains(&self.history_samples) {
            return config("controller.history_samples must be between 1 and 3600".into());
        }
        if !(self.bounded_load_factor.is_finite() && self.bounded_load_factor >= 1.0) {
            return config("controller.bounded_load_factor must be at least 1".into());
        }
        if let Some(f) = self.max_cache_fullness
            && !(f > 0.0 && f <= 1.0)
        {
            return config("controller.max_cache_fullness must be in (0, 1]".into());
        }
        if let Some(token) = &self.admin_token {
            check_token("admin_token", token)?;
            if token.0.len() < MIN_ADMIN_TOKEN_LEN {
                return config(format!(
                    "controller.admin_token must be at least {MIN_ADMIN_TOKEN_LEN} characters"
                ));
            }
        }
        if let Some(token) = &self.replica_admin_token {
            check_token("replica_admin_token", token)?;
        }
        Ok(())
    }

    /// The token sent to replicas' admin APIs.
    pub fn replica_token(&self) -> Option<&Token> {
        self.replica_admin_token
            .as_ref()
            .or(self.admin_token.as_ref())
    }
}

/// A token goes into an `Authorization` header: visible ASCII only.
fn check_token(name: &str, token: &Token) -> Result<(), Error> {
    if token.0.is_empty() || !token.0.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "controller.{name} must be non-empty visible ASCII without spaces"
        )));
    }
    Ok(())
}

/// Checks and normalizes a replica's or origin's base URL: `http(s)://`,
/// a host, no query or fragment; a trailing `/` is dropped. A path prefix
/// is kept, so a replica may live under one.
pub fn base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("`{url}` must be an http(s):// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{url}` must not carry credentials"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_take_a_dead_replica_out_within_two_seconds() {
        let config = Config::default();
        config.validate().unwrap();
        // Worst case: the replica dies just after a good probe, then `fall`
        // probes must fail, each taking at most the timeout.
        let worst = config.probe_fall as u64
            * config.probe_interval_ms.max(config.probe_timeout_ms)
            + config.probe_timeout_ms;
        assert!(worst <= 2_000, "{worst} ms");
    }

    #[test]
    fn base_urls_are_normalized_and_checked() {
        assert_eq!(
            base_url("https://edge1.example:8081/").unwrap(),
            "https://edge1.example:8081"
        );
        assert_eq!(
            base_url("https://cdn.example/edge/").unwrap(),
            "https://cdn.example/edge"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://x/?a=1").is_err());
        assert!(base_url("https://user:pw@x").is_err());
        assert!(base_url("localhost:8081").is_err());
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        let config = Config {
            admin_token: Some(Token::new("short")),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn tokens_do_not_show_in_debug_output() {
        let config = Config {
            admin_token: Some(Token::new("s3cret-s3cret-s3cret")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn strategy_and_mode_names_round_trip() {
        for s in [
            Strategy::RoundRobin,
            Strategy::ConsistentHash,
            Strategy::LeastLoaded,
        ] {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
        }
        for m in [Mode::Redirect, Mode::Proxy] {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
    }
}
