//! Choosing a replica for a viewer.
//!
//! Only replicas in rotation (healthy, not overloaded) get new viewers.
//! When every healthy replica is overloaded, the least loaded of them is
//! used anyway: the thresholds protect replicas from one another, and
//! sending the overflow to the origin (which every replica depends on)
//! would be worse. When no replica is healthy at all the caller falls back
//! to the origin, if configured.
//!
//! The strategies order the candidates; the first is the choice, the rest
//! are the proxy's failover order:
//! - round-robin: the next replica in turn (by URL order);
//! - consistent-hash: rendezvous (highest random weight) hashing of the
//!   video key, so each video has a stable ranking of replicas and a
//!   replica leaving moves only the videos it ranked first; with bounded
//!   load (Mirrokni, Thorup, Zadimoghaddam 2016), a replica whose load
//!   would pass `bounded_load_factor` × the mean is skipped for the next in
//!   the video's ranking;
//! - least-loaded: the fewest active streams (reported plus sent since the
//!   report), ties broken by bytes per second out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twox_hash::XxHash3_64;

use crate::config::Strategy;
use crate::registry::Member;

/// File extensions of segmented streams (HLS, DASH, CMAF). Their playlists
/// and segments are keyed by folder, so a whole rendition is one "video":
/// one viewer stays on one replica and the segments cache together.
const SEGMENTED: &[&str] = &[
    "m3u8", "mpd", "ts", "m4s", "aac", "vtt", "webvtt", "cmfv", "cmfa", "key",
];

/// The key a path is routed by: the path itself for a single-file video,
/// the folder (with its trailing `/`) for a segment or playlist.
pub fn video_key(path: &str) -> &str {
    let Some(slash) = path.rfind('/') else {
        return path;
    };
    let file = &path[slash + 1..];
    let segmented = file
        .rsplit_once('.')
        .is_some_and(|(_, ext)| SEGMENTED.iter().any(|s| s.eq_ignore_ascii_case(ext)));
    if segmented { &path[..=slash] } else { path }
}

/// What routing knows of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub seed: u64,
    pub load: u64,
    pub bytes_out_per_sec: f64,
}

/// The rendezvous score of a replica for a key.
pub fn score(seed: u64, key: &str) -> u64 {
    XxHash3_64::oneshot_with_seed(seed, key.as_bytes())
}

/// Orders candidates for one request; index 0 is the choice.
pub fn order(
    strategy: Strategy,
    slots: &[Slot],
    key: &str,
    turn: usize,
    bounded_load_factor: f64,
) -> Vec<usize> {
    let n = slots.len();
    if n == 0 {
        return Vec::new();
    }
    match strategy {
        Strategy::RoundRobin => {
            let start = turn % n;
            (start..n).chain(0..start).collect()
        }
        Strategy::ConsistentHash => {
            let mut ranking: Vec<usize> = (0..n).collect();
            // Highest score first; the seed breaks the (astronomically
            // unlikely) tie so the order never depends on slot order.
            ranking.sort_by_key(|&i| std::cmp::Reverse((score(slots[i].seed, key), slots[i].seed)));
            let total: u64 = slots.iter().map(|s| s.load).sum();
            let capacity = (bounded_load_factor * (total + 1) as f64 / n as f64).ceil();
            if let Some(pos) = ranking
                .iter()
                .position(|&i| (slots[i].load + 1) as f64 <= capacity)
            {
                let chosen = ranking.remove(pos);
                ranking.insert(0, chosen);
            }
            ranking
        }
        Strategy::LeastLoaded => {
            let mut ranking: Vec<usize> = (0..n).collect();
            ranking.sort_by(|&a, &b| {
                slots[a]
                    .load
                    .cmp(&slots[b].load)
                    .then(
                        slots[a]
                            .bytes_out_per_sec
                            .total_cmp(&slots[b].bytes_out_per_sec),
                    )
                    .then(a.cmp(&b))
            });
            ranking
        }
    }
}

/// The routing policy of one controller.
pub struct Router {
    strategy: Strategy,
    bounded_load_factor: f64,
    turn: AtomicUsize,
}

impl Router {
    pub fn new(strategy: Strategy, bounded_load_factor: f64) -> Router {
        Router {
            strategy,
            bounded_load_factor,
            turn: AtomicUsize::new(0),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Replicas for `path`, best first: those in rotation ordered by the
    /// strategy, or, when none is, the healthy but overloaded ones from the
    /// least loaded. Empty when no replica is healthy.
    pub fn plan(&self, members: &[Arc<Member>], path: &str) -> Vec<Arc<Member>> {
        let key = video_key(path);
        let (rotation, overloaded): (Vec<_>, Vec<_>) = members
            .iter()
            .filter(|m| m.with_health(|h| h.state == crate::health::State::Healthy))
            .cloned()
            .partition(|m| m.in_rotation());
        let (candidates, strategy) = if rotation.is_empty() {
            (overloaded, Strategy::LeastLoaded)
        } else {
            (rotation, self.strategy)
        };
        let slots: Vec<Slot> = candidates
            .iter()
            .map(|m| Slot {
                seed: m.seed,
                load: m.load(),
                bytes_out_per_sec: m.bytes_out_per_sec(),
            })
            .collect();
        let turn = match strategy {
            Strategy::RoundRobin => self.turn.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        order(strategy, &slots, key, turn, self.bounded_load_factor)
            .into_iter()
            .map(|i| candidates[i].clone())
            .collect()
    }
}

/// Proxy mode's memory of which replica serves which viewer's video, so
/// all of one playback's range requests reach one cache.
pub struct Sticky {
    entries: Mutex<HashMap<(IpAddr, String), (String, Instant)>>,
    ttl: Duration,
    max_entries: usize,
}

impl Sticky {
    pub fn new(ttl: Duration, max_entries: usize) -> Sticky {
        Sticky {
            entries: Mutex::default(),
            ttl,
            max_entries,
        }
    }

    /// The replica URL this viewer's video went to, if still remembered.
    pub fn get(&self, viewer: IpAddr, key: &str) -> Option<String> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(&(viewer, key.to_owned()))?;
        if entry.1.elapsed() > self.ttl {
            return None;
        }
        entry.1 = Instant::now();
        Some(entry.0.clone())
    }

    /// Remembers where this viewer's video went. When the table is full of
    /// live entries the pair is not remembered: the viewer is still served,
    /// only without the guarantee.
    pub fn put(&self, viewer: IpAddr, key: &str, url: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() <= ttl);
            if entries.len() >= self.max_entries {
                return;
            }
        }
        entries.insert((viewer, key.to_owned()), (url.to_owned(), Instant::now()));
    }

    /// Drops expired entries.
    pub fn prune(&self) {
        let ttl = self.ttl;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, at)| at.elapsed() <= ttl);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, prop_assert_ne, proptest};

    fn slots(n: usize) -> Vec<Slot> {
        (0..n)
            .map(|i| Slot {
                seed: XxHash3_64::oneshot(format!("https://e{i}.example:8081").as_bytes()),
                load: 0,
                bytes_out_per_sec: 0.0,
            })
            .collect()
    }

    #[test]
    fn video_keys_group_segments_by_folder() {
        assert_eq!(video_key("/movie.mp4"), "/movie.mp4");
        assert_eq!(video_key("/show/720p/seg-00042.m4s"), "/show/720p/");
        assert_eq!(video_key("/show/720p/index.m3u8"), "/show/720p/");
        assert_eq!(video_key("/show/manifest.MPD"), "/show/");
        assert_eq!(video_key("/a.b/c"), "/a.b/c");
    }

    #[test]
    fn round_robin_takes_turns() {
        let s = slots(3);
        let firsts: Vec<usize> = (0..6)
            .map(|t| order(Strategy::RoundRobin, &s, "/x", t, 1.25)[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_loaded_prefers_fewer_streams_then_less_bandwidth() {
        let mut s = slots(3);
        s[0].load = 5;
        s[1].load = 2;
        s[2].load = 2;
        s[1].bytes_out_per_sec = 100.0;
        assert_eq!(order(Strategy::LeastLoaded, &s, "/x", 0, 1.25), [2, 1, 0]);
    }

    #[test]
    fn bounded_load_passes_a_hot_replica_to_the_next_in_the_ranking() {
        let mut s = slots(3);
        let unbounded = order(Strategy::ConsistentHash, &s, "/hot.mp4", 0, 1.25);
        s[unbounded[0]].load = 10;
        let bounded = order(Strategy::ConsistentHash, &s, "/hot.mp4", 0, 1.25);
        assert_eq!(bounded[0], unbounded[1]);
        assert!(bounded.contains(&unbounded[0]));
        // A factor large enough turns the bound off.
        assert_eq!(
            order(Strategy::ConsistentHash, &s, "/hot.mp4", 0, 1e9)[0],
            unbounded[0]
        );
    }

    #[test]
    fn bounded_load_holds_for_a_single_hot_key() {
        let mut s = slots(3);
        for _ in 0..300 {
            let chosen = order(Strategy::ConsistentHash, &s, "/hot.mp4", 0, 1.25)[0];
            s[chosen].load += 1;
        }
        let max = s.iter().map(|s| s.load).max().unwrap();
        assert!(max as f64 <= (1.25 * 300.0 / 3.0_f64).ceil(), "{max}");
    }

    #[test]
    fn sticky_entries_expire_and_the_table_is_bounded() {
        let viewer: IpAddr = [10, 0, 0, 1].into();
        let sticky = Sticky::new(Duration::from_secs(60), 2);
        sticky.put(viewer, "/a.mp4", "https://e1");
        sticky.put(viewer, "/b.mp4", "https://e2");
        sticky.put(viewer, "/c.mp4", "https://e3");
        assert_eq!(sticky.get(viewer, "/a.mp4").as_deref(), Some("https://e1"));
        assert_eq!(sticky.get(viewer, "/c.mp4"), None);
        let expired = Sticky::new(Duration::ZERO, 10);
        expired.put(viewer, "/a.mp4", "https://e1");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(expired.get(viewer, "/a.mp4"), None);
        expired.prune();
        assert!(expired.is_empty());
    }

    proptest! {
        /// Rendezvous hashing: removing a replica moves exactly the keys
        /// it ranked first, and every other key stays where it was.
        #[test]
        fn a_replica_leaving_moves_only_its_keys(n in 2usize..8, gone in 0usize..8, keys in proptest::collection::vec("/[a-z0-9]{1,12}\\.mp4", 1..200)) {
            let gone = gone % n;
            let all = slots(n);
            let rest: Vec<Slot> = all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, s)| *s).collect();
            for key in &keys {
                let before = all[order(Strategy::ConsistentHash, &all, key, 0, 1e9)[0]].seed;
                let after = rest[order(Strategy::ConsistentHash, &rest, key, 0, 1e9)[0]].seed;
                if before == all[gone].seed {
                    prop_assert_ne!(after, before);
                } else {
                    prop_assert_eq!(after, before);
                }
            }
        }

        /// Bounded load: whatever the key stream, no replica's share passes
        /// the bound.
        #[test]
        fn no_replica_passes_the_bound(n in 1usize..6, keys in proptest::collection::vec(0u8..4, 1..400)) {
            let mut s = slots(n);
            for (i, k) in keys.iter().enumerate() {
                let chosen = order(Strategy::ConsistentHash, &s, &format!("/v{k}.mp4"), 0, 1.25)[0];
                s[chosen].load += 1;
                let total = (i + 1) as f64;
                let max = s.iter().map(|s| s.load).max().unwrap_or(0) as f64;
                prop_assert!(max <= (1.25 * total / n as f64).ceil());
            }
        }
    }
}
