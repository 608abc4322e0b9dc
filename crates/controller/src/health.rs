//! Active health checks: every replica's `/healthz` is probed on a fixed
//! interval, and what it reports (status, load, cache statistics) decides
//! whether it gets new viewers.
//!
//! A replica is **healthy** after its first good probe, goes **down** after
//! `probe_fall` consecutive failures (a refused connection, a timeout, a
//! non-200 answer), and comes back after `probe_rise` consecutive good
//! probes, so one lost probe does not flap it. A replica that answers but
//! says it is not ok (`"status": "draining"`, say) is taken out at once:
//! it knows better than the controller. A healthy replica whose reported
//! load passes a configured threshold is **overloaded**: it keeps its
//! viewers but gets no new ones.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::time::MissedTickBehavior;

use crate::config::Config;
use crate::registry::Member;

/// Largest `/healthz` body read; the real one is a few hundred bytes.
const MAX_HEALTHZ_BYTES: usize = 64 * 1024;

/// Where a replica stands, as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not probed yet.
    Unknown,
    Healthy,
    Down,
}

/// What a replica's `/healthz` said. Every field but `status` is optional
/// and read leniently: a field of the wrong type is ignored rather than
/// failing the probe, so a replica newer or older than the controller is
/// still routed to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub status: String,
    pub name: Option<String>,
    pub active_streams: Option<u64>,
    pub bytes_out_per_sec: Option<f64>,
    pub requests_per_sec: Option<f64>,
    pub cache_bytes: Option<u64>,
    pub cache_max_bytes: Option<u64>,
    pub cache_fullness: Option<f64>,
    pub hit_ratio: Option<f64>,
    pub requests_total: Option<u64>,
    pub hits_total: Option<u64>,
    pub bytes_served_total: Option<u64>,
    pub origin_bytes_total: Option<u64>,
}

impl Report {
    /// Reads a `/healthz` body; `None` when it is not a JSON object with a
    /// string `status`.
    pub fn parse(body: &[u8]) -> Option<Report> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let object = value.as_object()?;
        let u = |k: &str| object.get(k).and_then(Value::as_u64);
        let f = |k: &str| {
            object
                .get(k)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Some(Report {
            status: object.get("status")?.as_str()?.to_owned(),
            name: object
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty() && n.len() <= 128)
                .map(str::to_owned),
            active_streams: u("active_streams"),
            bytes_out_per_sec: f("bytes_out_per_sec"),
            requests_per_sec: f("requests_per_sec"),
            cache_bytes: u("cache_bytes"),
            cache_max_bytes: u("cache_max_bytes"),
            cache_fullness: f("cache_fullness"),
            hit_ratio: f("hit_ratio"),
            requests_total: u("requests_total"),
            hits_total: u("hits_total"),
            bytes_served_total: u("bytes_served_total"),
            origin_bytes_total: u("origin_bytes_total"),
        })
    }

    /// The hit ratio, reported or computed from the totals.
    pub fn hit_ratio(&self) -> Option<f64> {
        self.hit_ratio
            .or(match (self.hits_total, self.requests_total) {
                (Some(hits), Some(requests)) if requests > 0 => Some(hits as f64 / requests as f64),
                _ => None,
            })
    }

    /// The cache fullness, reported or computed from the sizes.
    pub fn cache_fullness(&self) -> Option<f64> {
        self.cache_fullness
            .or(match (self.cache_bytes, self.cache_max_bytes) {
                (Some(used), Some(max)) if max > 0 => Some(used as f64 / max as f64),
                _ => None,
            })
    }
}

/// The result of one probe.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200 and `"status": "ok"`.
    Ok(Report),
    /// The replica answered and said it is not ok.
    NotOk(String),
    /// No usable answer.
    Failed(String),
}

/// Thresholds above which a healthy replica gets no new viewers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_active_streams: Option<u64>,
    pub max_bytes_out_per_sec: Option<u64>,
    pub max_cache_fullness: Option<f64>,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_active_streams: config.max_active_streams,
            max_bytes_out_per_sec: config.max_bytes_out_per_sec,
            max_cache_fullness: config.max_cache_fullness,
        }
    }

    /// Why a report counts as overloaded, if it does.
    pub fn overloaded(&self, report: &Report, rates: &Rates) -> Option<String> {
        if let (Some(max), Some(streams)) = (self.max_active_streams, report.active_streams)
            && streams >= max
        {
            return Some(format!("{streams} active streams (limit {max})"));
        }
        if let (Some(max), Some(bytes)) = (self.max_bytes_out_per_sec, rates.bytes_out_per_sec)
            && bytes >= max as f64
        {
            return Some(format!("{bytes:.0} bytes/s out (limit {max})"));
        }
        if let (Some(max), Some(full)) = (self.max_cache_fullness, report.cache_fullness())
            && full >= max
        {
            return Some(format!(
                "cache {:.0}% full (limit {:.0}%)",
                full * 100.0,
                max * 100.0
            ));
        }
        None
    }
}

/// Request and byte rates: reported by the replica, or derived from the
/// growth of its totals between two probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub requests_per_sec: Option<f64>,
    pub bytes_out_per_sec: Option<f64>,
}

/// One point of a replica's recent history, for the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub unix_ms: u64,
    pub healthy: bool,
    pub active_streams: Option<u64>,
    pub requests_per_sec: Option<f64>,
    pub bytes_out_per_sec: Option<f64>,
    pub hit_ratio: Option<f64>,
}

/// The rules a probe result is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub fall: u32,
    pub rise: u32,
    pub limits: Limits,
    pub history_interval: Duration,
    pub history_samples: usize,
}

impl Rules {
    pub fn from_config(config: &Config) -> Rules {
        Rules {
            fall: config.probe_fall,
            rise: config.probe_rise,
            limits: Limits::from_config(config),
            history_interval: Duration::from_millis(config.history_interval_ms),
            history_samples: config.history_samples,
        }
    }
}

/// A replica's health record, updated by its probe loop.
#[derive(Debug)]
pub struct Health {
    pub state: State,
    /// Why a healthy replica gets no new viewers, when it is overloaded.
    pub overloaded: Option<String>,
    /// When `state` last changed.
    pub since: SystemTime,
    consecutive_ok: u32,
    consecutive_failed: u32,
    pub last_probe: Option<SystemTime>,
    pub last_error: Option<String>,
    pub latency: Option<Duration>,
    /// The last good report.
    pub report: Option<Report>,
    pub rates: Rates,
    pub probe_failures_total: u64,
    /// The totals of the previous good report, to derive rates from.
    previous: Option<(Instant, Option<u64>, Option<u64>)>,
    pub history: VecDeque<Sample>,
    last_sample: Option<Instant>,
}

/// What a probe changed, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub from: (State, bool),
    pub to: (State, bool),
}

impl Health {
    pub fn new() -> Health {
        Health {
            state: State::Unknown,
            overloaded: None,
            since: SystemTime::now(),
            consecutive_ok: 0,
            consecutive_failed: 0,
            last_probe: None,
            last_error: None,
            latency: None,
            report: None,
            rates: Rates::default(),
            probe_failures_total: 0,
            previous: None,
            history: VecDeque::new(),
            last_sample: None,
        }
    }

    /// Whether new viewers may be sent here.
    pub fn in_rotation(&self) -> bool {
        self.state == State::Healthy && self.overloaded.is_none()
    }

    /// The state's name in the cluster API.
    pub fn state_name(&self) -> &'static str {
        match (self.state, &self.overloaded) {
            (State::Healthy, Some(_)) => "overloaded",
            (State::Healthy, None) => "healthy",
            (State::Down, _) => "down",
            (State::Unknown, _) => "unknown",
        }
    }

    /// Active streams as last reported (zero when unknown or down).
    pub fn active_streams(&self) -> u64 {
        match (self.state, &self.report) {
            (State::Healthy, Some(report)) => report.active_streams.unwrap_or(0),
            _ => 0,
        }
    }

    /// Applies one probe's outcome; returns the change of state, if any.
    pub fn record(
        &mut self,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
        rules: &Rules,
    ) -> Option<Change> {
        let before = (self.state, self.overloaded.is_some());
        self.last_probe = Some(SystemTime::now());
        match outcome {
            Outcome::Ok(report) => {
                self.consecutive_ok += 1;
                self.consecutive_failed = 0;
                self.latency = Some(latency);
                self.last_error = None;
                self.rates = self.rates_for(&report, now);
                self.overloaded = rules.limits.overloaded(&report, &self.rates);
                self.report = Some(report);
                match self.state {
                    State::Unknown => self.state = State::Healthy,
                    State::Down if self.consecutive_ok >= rules.rise => {
                        self.state = State::Healthy;
                    }
                    State::Down | State::Healthy => {}
                }
            }
            Outcome::NotOk(why) => {
                self.fail(why);
                self.state = State::Down;
            }
            Outcome::Failed(why) => {
                self.fail(why);
                match self.state {
                    State::Unknown => self.state = State::Down,
                    State::Healthy if self.consecutive_failed >= rules.fall => {
                        self.state = State::Down;
                    }
                    State::Healthy | State::Down => {}
                }
            }
        }
        if self.state != State::Healthy {
            self.overloaded = None;
        }
        self.sample(now, rules);
        let after = (self.state, self.overloaded.is_some());
        if after.0 != before.0 {
            self.since = SystemTime::now();
        }
        (after != before).then_some(Change {
            from: before,
            to: after,
        })
    }

    fn fail(&mut self, why: String) {
        self.consecutive_ok = 0;
        self.consecutive_failed += 1;
        self.probe_failures_total += 1;
        self.last_error = Some(why);
        // A rate across a gap of failed probes would mix two periods.
        self.previous = None;
    }

    fn rates_for(&mut self, report: &Report, now: Instant) -> Rates {
        let derived =
            |previous: Option<u64>, current: Option<u64>, elapsed: f64| match (previous, current) {
                (Some(p), Some(c)) if c >= p && elapsed > 0.0 => Some((c - p) as f64 / elapsed),
                _ => None,
            };
        let mut rates = Rates {
            requests_per_sec: report.requests_per_sec,
            bytes_out_per_sec: report.bytes_out_per_sec,
        };
        if let Some((at, requests, bytes)) = self.previous {
            let elapsed = now.duration_since(at).as_secs_f64();
            rates.requests_per_sec = rates
                .requests_per_sec
                .or_else(|| derived(requests, report.requests_total, elapsed));
            rates.bytes_out_per_sec = rates
                .bytes_out_per_sec
                .or_else(|| derived(bytes, report.bytes_served_total, elapsed));
        }
        self.previous = Some((now, report.requests_total, report.bytes_served_total));
        rates
    }

    fn sample(&mut self, now: Instant, rules: &Rules) {
        if self
            .last_sample
            .is_some_and(|at| now.duration_since(at) < rules.history_interval)
        {
            return;
        }
        self.last_sample = Some(now);
        let healthy = self.state == State::Healthy;
        let report = self.report.as_ref().filter(|_| healthy);
        self.history.push_back(Sample {
            unix_ms: unix_ms(SystemTime::now()),
            healthy,
            active_streams: report.and_then(|r| r.active_streams),
            requests_per_sec: report.and(self.rates.requests_per_sec),
            bytes_out_per_sec: report.and(self.rates.bytes_out_per_sec),
            hit_ratio: report.and_then(Report::hit_ratio),
        });
        while self.history.len() > rules.history_samples {
            self.history.pop_front();
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// Milliseconds since the Unix epoch, for JSON timestamps.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Probes one replica's `/healthz`.
pub async fn probe(client: &reqwest::Client, base_url: &str, timeout: Duration) -> Outcome {
    let url = format!("{base_url}/healthz");
    let attempt = async {
        let mut response = client.get(&url).send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_HEALTHZ_BYTES {
                return Err("healthz answer too large".to_owned());
            }
        }
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::Failed(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Outcome::Failed(e),
        Ok(Ok((status, body))) => match Report::parse(&body) {
            Some(report) if status == http::StatusCode::OK && report.status == "ok" => {
                Outcome::Ok(report)
            }
            Some(report) if report.status != "ok" => {
                Outcome::NotOk(format!("replica reports status `{}`", report.status))
            }
            _ if status != http::StatusCode::OK => Outcome::Failed(format!("HTTP {status}")),
            _ => Outcome::Failed("healthz answer is not the expected JSON".into()),
        },
    }
}

/// A short, log-safe description of a client error.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    // The source chain says why (refused, reset, certificate), without the
    // URL, which the caller logs next to it.
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// Probes `member` every `probe_interval_ms` until its token is cancelled.
pub(crate) async fn probe_loop(shared: Arc<crate::Shared>, member: Arc<Member>) {
    let config = &shared.config;
    let timeout = Duration::from_millis(config.probe_timeout_ms);
    let rules = Rules::from_config(config);
    let interval = Duration::from_millis(config.probe_interval_ms);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A probe asked for early (a viewer's request just failed there) still
    // comes at least half an interval after the previous one, so `fall`
    // failures span about as long as with the regular probes.
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = member.stopped() => return,
            _ = tick.tick() => {}
            _ = member.probe_requested() => {
                if let Some(last) = last {
                    tokio::select! {
                        _ = tokio::time::sleep_until(last + interval / 2) => {}
                        _ = member.stopped() => return,
                    }
                }
                tick.reset();
            }
        }
        last = Some(tokio::time::Instant::now());
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = probe(&shared.probe_client, &member.url, timeout) => outcome,
            _ = member.stopped() => return,
        };
        shared
            .metrics
            .probe(&member.url, !matches!(outcome, Outcome::Ok(_)));
        let change = member.record_probe(outcome, started.elapsed(), Instant::now(), &rules);
        if let Some(change) = change {
            member.log_change(&change);
            shared.health_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            fall: 2,
            rise: 2,
            limits: Limits {
                max_active_streams: Some(100),
                ..Limits::default()
            },
            history_interval: Duration::ZERO,
            history_samples: 3,
        }
    }

    fn ok(streams: u64) -> Outcome {
        Outcome::Ok(Report {
            status: "ok".into(),
            active_streams: Some(streams),
            ..Report::default()
        })
    }

    fn failed() -> Outcome {
        Outcome::Failed("refused".into())
    }

    #[test]
    fn todays_minimal_healthz_is_a_good_report() {
        let report = Report::parse(br#"{"status":"ok","role":"replica"}"#).unwrap();
        assert_eq!(report.status, "ok");
        assert_eq!(report.active_streams, None);
    }

    #[test]
    fn fields_of_the_wrong_type_are_ignored_not_fatal() {
        let report =
            Report::parse(br#"{"status":"ok","active_streams":-3,"hit_ratio":"high","name":"e1"}"#)
                .unwrap();
        assert_eq!(report.active_streams, None);
        assert_eq!(report.hit_ratio, None);
        assert_eq!(report.name.as_deref(), Some("e1"));
        assert!(Report::parse(b"[1,2]").is_none());
        assert!(Report::parse(br#"{"role":"replica"}"#).is_none());
    }

    #[test]
    fn one_failure_does_not_flap_but_fall_failures_take_it_out() {
        let rules = rules();
        let mut health = Health::new();
        let t = Instant::now();
        assert!(health.record(ok(0), Duration::ZERO, t, &rules).is_some());
        assert!(health.in_rotation());
        assert!(health.record(failed(), Duration::ZERO, t, &rules).is_none());
        assert!(health.in_rotation());
        assert!(health.record(failed(), Duration::ZERO, t, &rules).is_some());
        assert_eq!(health.state, State::Down);
        // Rise: one good probe is not enough to come back.
        assert!(health.record(ok(0), Duration::ZERO, t, &rules).is_none());
        assert_eq!(health.state, State::Down);
        assert!(health.record(ok(0), Duration::ZERO, t, &rules).is_some());
        assert!(health.in_rotation());
    }

    #[test]
    fn a_replica_saying_it_is_not_ok_leaves_at_once() {
        let rules = rules();
        let mut health = Health::new();
        let t = Instant::now();
        health.record(ok(0), Duration::ZERO, t, &rules);
        health.record(Outcome::NotOk("draining".into()), Duration::ZERO, t, &rules);
        assert_eq!(health.state, State::Down);
    }

    #[test]
    fn overload_keeps_the_replica_healthy_but_out_of_rotation() {
        let rules = rules();
        let mut health = Health::new();
        let t = Instant::now();
        health.record(ok(150), Duration::ZERO, t, &rules);
        assert_eq!(health.state, State::Healthy);
        assert_eq!(health.state_name(), "overloaded");
        assert!(!health.in_rotation());
        health.record(ok(20), Duration::ZERO, t, &rules);
        assert!(health.in_rotation());
    }

    #[test]
    fn rates_are_derived_from_totals_when_not_reported() {
        let rules = rules();
        let mut health = Health::new();
        let t = Instant::now();
        let report = |requests, bytes| {
            Outcome::Ok(Report {
                status: "ok".into(),
                requests_total: Some(requests),
                bytes_served_total: Some(bytes),
                ..Report::default()
            })
        };
        health.record(report(10, 1000), Duration::ZERO, t, &rules);
        health.record(
            report(30, 5000),
            Duration::ZERO,
            t + Duration::from_secs(2),
            &rules,
        );
        assert_eq!(health.rates.requests_per_sec, Some(10.0));
        assert_eq!(health.rates.bytes_out_per_sec, Some(2000.0));
    }

    #[test]
    fn history_is_bounded() {
        let rules = rules();
        let mut health = Health::new();
        let t = Instant::now();
        for i in 0..10 {
            health.record(ok(i), Duration::ZERO, t, &rules);
        }
        assert_eq!(health.history.len(), 3);
        assert_eq!(health.history.back().unwrap().active_streams, Some(9));
    }
}
