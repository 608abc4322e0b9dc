//! The live set of replicas: those from the configuration, those an
//! operator joined through the admin API, and those that announced
//! themselves by heartbeat.
//!
//! A replica is identified by its base URL (`https://edge1.example:8081`),
//! never by an address assumed to be local. Each member owns a probe loop
//! (see [`crate::health`]) that stops when the member is removed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::health::{Change, Health, Outcome, Rules};

/// Most replicas the controller tracks, so a misbehaving token holder
/// cannot grow its memory without bound by announcing made-up URLs.
pub const MAX_REPLICAS: usize = 256;

/// How a replica became known. It decides what may remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Listed in the configuration.
    Config,
    /// Joined through `POST /admin/replicas`; stays until removed.
    Admin,
    /// Announced itself; dropped when its heartbeats stop.
    Heartbeat,
}

/// One replica of the set.
#[derive(Debug)]
pub struct Member {
    /// Normalized base URL, without a trailing slash.
    pub url: String,
    /// The replica's identity in rendezvous hashing: a hash of its URL, so
    /// every controller ranks replicas alike.
    pub seed: u64,
    state: Mutex<MemberState>,
    /// Viewers sent here since the last good probe: load the replica could
    /// not report yet.
    routed_since_probe: AtomicU64,
    routed_total: AtomicU64,
    stop: CancellationToken,
    /// Wakes the probe loop before its next tick.
    probe_now: tokio::sync::Notify,
}

#[derive(Debug)]
struct MemberState {
    source: Source,
    /// Name given by heartbeat or admin call, until the replica reports one.
    announced_name: Option<String>,
    last_heartbeat: Option<Instant>,
    health: Health,
}

impl Member {
    fn new(url: String, source: Source, name: Option<String>, stop: CancellationToken) -> Member {
        Member {
            seed: twox_hash::XxHash3_64::oneshot(url.as_bytes()),
            url,
            state: Mutex::new(MemberState {
                source,
                announced_name: name,
                last_heartbeat: (source == Source::Heartbeat).then(Instant::now),
                health: Health::new(),
            }),
            routed_since_probe: AtomicU64::new(0),
            routed_total: AtomicU64::new(0),
            stop,
            probe_now: tokio::sync::Notify::new(),
        }
    }

    /// Asks for a probe soon rather than at the next interval: a proxied
    /// request just failed here. Only probes decide health, so one failed
    /// viewer request cannot take a replica out by itself, and an early
    /// probe still comes half an interval after the previous one.
    pub fn probe_soon(&self) {
        self.probe_now.notify_one();
    }

    /// Resolves when [`probe_soon`](Self::probe_soon) was called.
    pub async fn probe_requested(&self) {
        self.probe_now.notified().await;
    }

    fn state(&self) -> MutexGuard<'_, MemberState> {
        // A panic while holding this lock cannot leave it half-updated in a
        // way that matters more than losing the controller: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica's name: reported by its `/healthz`, else announced, else
    /// the URL's `host:port`.
    pub fn name(&self) -> String {
        let state = self.state();
        state
            .health
            .report
            .as_ref()
            .and_then(|r| r.name.clone())
            .or_else(|| state.announced_name.clone())
            .unwrap_or_else(|| authority(&self.url))
    }

    pub fn source(&self) -> Source {
        self.state().source
    }

    /// Runs `f` on the health record. `f` must not call other methods of
    /// this member: the lock is not re-entrant.
    pub fn with_health<T>(&self, f: impl FnOnce(&Health) -> T) -> T {
        f(&self.state().health)
    }

    pub fn in_rotation(&self) -> bool {
        self.state().health.in_rotation()
    }

    /// The load routing compares: active streams as last reported plus
    /// viewers sent here since that report.
    pub fn load(&self) -> u64 {
        self.state().health.active_streams() + self.routed_since_probe.load(Ordering::Relaxed)
    }

    /// Bytes per second out, for breaking ties between equal loads.
    pub fn bytes_out_per_sec(&self) -> f64 {
        self.state().health.rates.bytes_out_per_sec.unwrap_or(0.0)
    }

    /// Counts a viewer sent here.
    pub fn routed(&self) {
        self.routed_since_probe.fetch_add(1, Ordering::Relaxed);
        self.routed_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn routed_total(&self) -> u64 {
        self.routed_total.load(Ordering::Relaxed)
    }

    /// Applies a probe result. A good probe carries the replica's own count
    /// of active streams, so the viewers counted since the last one are
    /// dropped from the estimate.
    pub fn record_probe(
        &self,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
        rules: &Rules,
    ) -> Option<Change> {
        if matches!(outcome, Outcome::Ok(_)) {
            self.routed_since_probe.store(0, Ordering::Relaxed);
        }
        self.state().health.record(outcome, latency, now, rules)
    }

    pub fn log_change(&self, change: &Change) {
        let (state, reason) = self.with_health(|h| {
            (
                h.state_name(),
                h.last_error.clone().or_else(|| h.overloaded.clone()),
            )
        });
        if change.to.0 == crate::health::State::Healthy && !change.to.1 {
            tracing::info!(replica = %self.url, state, "replica in rotation");
        } else {
            tracing::warn!(replica = %self.url, state, reason = reason.as_deref().unwrap_or(""), "replica out of rotation");
        }
    }

    fn heartbeat(&self, name: Option<String>) {
        let mut state = self.state();
        state.last_heartbeat = Some(Instant::now());
        if name.is_some() {
            state.announced_name = name;
        }
    }

    /// Resolves when the member has been removed (or the controller stops).
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// When it last announced itself, if it ever did.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.state().last_heartbeat
    }
}

/// `host:port` of a URL, the default name of a replica.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// What a join or heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    New,
    Known,
}

/// Why a replica could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The replica set.
#[derive(Debug)]
pub struct Registry {
    members: RwLock<BTreeMap<String, Arc<Member>>>,
    /// Parent of every member's probe loop token.
    tasks: CancellationToken,
    /// Bumped on every change of membership or health, for waiters.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new(tasks: CancellationToken) -> Registry {
        Registry {
            members: RwLock::default(),
            tasks,
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Every member, ordered by URL.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.read().values().cloned().collect()
    }

    pub fn get(&self, url: &str) -> Option<Arc<Member>> {
        self.read().get(url).cloned()
    }

    /// Adds a replica (`url` already normalized), or updates how a known one
    /// is held: an admin join pins a replica that came by heartbeat, so it
    /// no longer expires.
    pub fn add(
        &self,
        url: &str,
        source: Source,
        name: Option<String>,
    ) -> Result<(Arc<Member>, Joined), Full> {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        if let Some(member) = members.get(url) {
            let member = member.clone();
            drop(members);
            match source {
                Source::Heartbeat => member.heartbeat(name),
                Source::Admin | Source::Config => {
                    let mut state = member.state();
                    if state.source == Source::Heartbeat {
                        state.source = source;
                    }
                    if name.is_some() {
                        state.announced_name = name;
                    }
                }
            }
            return Ok((member, Joined::Known));
        }
        if members.len() >= MAX_REPLICAS {
            return Err(Full);
        }
        let member = Arc::new(Member::new(
            url.to_owned(),
            source,
            name,
            self.tasks.child_token(),
        ));
        members.insert(url.to_owned(), member.clone());
        drop(members);
        self.bump();
        Ok((member, Joined::New))
    }

    /// Removes a replica and stops its probes.
    pub fn remove(&self, url: &str) -> Option<Arc<Member>> {
        let removed = self
            .members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
        if let Some(member) = &removed {
            member.stop.cancel();
            self.bump();
        }
        removed
    }

    /// Removes replicas that joined by heartbeat and have been silent for
    /// longer than `expiry`.
    pub fn expire(&self, expiry: Duration) -> Vec<Arc<Member>> {
        let silent: Vec<String> = self
            .read()
            .values()
            .filter(|m| {
                let state = m.state();
                state.source == Source::Heartbeat
                    && state.last_heartbeat.is_none_or(|at| at.elapsed() >= expiry)
            })
            .map(|m| m.url.clone())
            .collect();
        silent.iter().filter_map(|url| self.remove(url)).collect()
    }

    /// Signals a change of health to waiters.
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that sees every change of membership or health.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Member>>> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_is_the_authority() {
        assert_eq!(
            authority("https://edge1.example:8081"),
            "edge1.example:8081"
        );
        assert_eq!(authority("https://cdn.example/edge"), "cdn.example");
    }

    #[test]
    fn an_admin_join_pins_a_heartbeat_replica() {
        let registry = Registry::new(CancellationToken::new());
        let url = "https://e1.example:8081";
        let (_, joined) = registry.add(url, Source::Heartbeat, None).unwrap();
        assert_eq!(joined, Joined::New);
        let (member, joined) = registry.add(url, Source::Admin, None).unwrap();
        assert_eq!(joined, Joined::Known);
        assert_eq!(member.source(), Source::Admin);
        assert!(registry.expire(Duration::ZERO).is_empty());
    }

    #[test]
    fn silent_heartbeat_replicas_expire_and_stop_probing() {
        let registry = Registry::new(CancellationToken::new());
        let (member, _) = registry
            .add(
                "https://e2.example:8081",
                Source::Heartbeat,
                Some("e2".into()),
            )
            .unwrap();
        registry
            .add("https://e3.example:8081", Source::Config, None)
            .unwrap();
        assert!(registry.expire(Duration::from_secs(60)).is_empty());
        let expired = registry.expire(Duration::ZERO);
        assert_eq!(expired.len(), 1);
        assert_eq!(member.name(), "e2");
        assert!(member.stop.is_cancelled());
        assert_eq!(registry.members().len(), 1);
    }

    #[test]
    fn the_set_is_bounded() {
        let registry = Registry::new(CancellationToken::new());
        for i in 0..MAX_REPLICAS {
            registry
                .add(&format!("https://e{i}.example"), Source::Heartbeat, None)
                .unwrap();
        }
        assert_eq!(
            registry
                .add("https://one-more.example", Source::Heartbeat, None)
                .unwrap_err(),
            Full
        );
    }
}
