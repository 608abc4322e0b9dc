//! Which chunks leave the disk when the cache is full.
//!
//! The default is S3-FIFO (Yang et al., SOSP 2023): new chunks enter a small
//! FIFO (a tenth of the space); a chunk read again while there moves to the
//! main FIFO, one that was not is evicted and remembered in a ghost list, so
//! that if it comes back soon it goes straight to main. Main evicts in FIFO
//! order but gives every chunk that was read since its last pass another
//! round. A crawl of one-time objects thus churns only the small queue and
//! leaves the hot set in main alone, which plain LRU cannot do: there every
//! new chunk pushes the oldest hot one out. LRU is kept as an option so the
//! difference can be measured.
//!
//! Accounting is in bytes (u64), so objects over 4 GiB are counted exactly.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Deserialize;

/// A chunk: the object's id and the chunk's index.
pub type ChunkId = (u64, u64);

/// The eviction policy, from config.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    S3Fifo,
    /// Plain least-recently-used, for comparison.
    Lru,
}

/// Frequency counters saturate here (two bits, as in the paper).
const MAX_FREQ: u8 = 3;

pub struct Evictor {
    capacity: u64,
    used: u64,
    inner: Inner,
}

enum Inner {
    S3Fifo(S3Fifo),
    Lru(lru::LruCache<ChunkId, u64>),
}

impl Evictor {
    pub fn new(policy: Policy, capacity: u64) -> Evictor {
        let inner = match policy {
            Policy::S3Fifo => Inner::S3Fifo(S3Fifo::default()),
            Policy::Lru => Inner::Lru(lru::LruCache::unbounded()),
        };
        Evictor {
            capacity,
            used: 0,
            inner,
        }
    }

    /// Bytes of the chunks admitted and not evicted.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Admits a chunk of `bytes` and returns the chunks to evict so that
    /// the total stays within the capacity. The new chunk itself may be
    /// among them when it is bigger than the whole cache.
    pub fn admit(&mut self, id: ChunkId, bytes: u64) -> Vec<ChunkId> {
        if self.contains(id) {
            return Vec::new();
        }
        self.used += bytes;
        match &mut self.inner {
            Inner::S3Fifo(s3) => s3.insert(id, bytes),
            Inner::Lru(lru) => {
                lru.put(id, bytes);
            }
        }
        let mut evicted = Vec::new();
        while self.used > self.capacity {
            let victim = match &mut self.inner {
                Inner::S3Fifo(s3) => s3.evict(self.capacity),
                Inner::Lru(lru) => lru.pop_lru(),
            };
            match victim {
                Some((victim, bytes)) => {
                    self.used -= bytes;
                    evicted.push(victim);
                }
                None => break,
            }
        }
        evicted
    }

    /// Records a read of a chunk.
    pub fn touch(&mut self, id: ChunkId) {
        match &mut self.inner {
            Inner::S3Fifo(s3) => s3.touch(id),
            Inner::Lru(lru) => {
                lru.get(&id);
            }
        }
    }

    /// Forgets a chunk that left the cache for another reason (purge,
    /// new version, file lost).
    pub fn remove(&mut self, id: ChunkId) {
        let bytes = match &mut self.inner {
            Inner::S3Fifo(s3) => s3.remove(id),
            Inner::Lru(lru) => lru.pop(&id),
        };
        if let Some(bytes) = bytes {
            self.used -= bytes;
        }
    }

    pub fn contains(&self, id: ChunkId) -> bool {
        match &self.inner {
            Inner::S3Fifo(s3) => s3.entries.contains_key(&id),
            Inner::Lru(lru) => lru.contains(&id),
        }
    }
}

struct Entry {
    bytes: u64,
    freq: u8,
    in_main: bool,
}

#[derive(Default)]
struct S3Fifo {
    entries: HashMap<ChunkId, Entry>,
    /// Queues hold ids; an id whose entry is gone or moved is skipped.
    small: VecDeque<ChunkId>,
    main: VecDeque<ChunkId>,
    small_bytes: u64,
    ghost: VecDeque<ChunkId>,
    ghost_set: HashSet<ChunkId>,
}

impl S3Fifo {
    fn insert(&mut self, id: ChunkId, bytes: u64) {
        let in_main = self.ghost_set.remove(&id);
        self.entries.insert(
            id,
            Entry {
                bytes,
                freq: 0,
                in_main,
            },
        );
        if in_main {
            self.main.push_back(id);
        } else {
            self.small.push_back(id);
            self.small_bytes += bytes;
        }
    }

    fn touch(&mut self, id: ChunkId) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.freq = (entry.freq + 1).min(MAX_FREQ);
        }
    }

    fn remove(&mut self, id: ChunkId) -> Option<u64> {
        let entry = self.entries.remove(&id)?;
        if !entry.in_main {
            self.small_bytes -= entry.bytes;
        }
        Some(entry.bytes)
    }

    /// Picks one chunk to evict.
    fn evict(&mut self, capacity: u64) -> Option<(ChunkId, u64)> {
        loop {
            let from_small = self.small_bytes > capacity / 10 || self.main.is_empty();
            let queue = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let id = match queue.pop_front() {
                Some(id) => id,
                None if from_small && !self.main.is_empty() => continue,
                None => return None,
            };
            let Some(entry) = self.entries.get_mut(&id) else {
                continue; // removed meanwhile
            };
            if entry.in_main == from_small {
                continue; // a stale queue slot of a moved entry
            }
            if from_small {
                self.small_bytes -= entry.bytes;
                if entry.freq > 0 {
                    entry.in_main = true;
                    entry.freq = 0;
                    self.main.push_back(id);
                    continue;
                }
                let bytes = entry.bytes;
                self.entries.remove(&id);
                self.remember(id);
                return Some((id, bytes));
            }
            if entry.freq > 0 {
                entry.freq -= 1;
                self.main.push_back(id);
                continue;
            }
            let bytes = entry.bytes;
            self.entries.remove(&id);
            return Some((id, bytes));
        }
    }

    /// Keeps the ghost list about as long as the number of cached chunks.
    fn remember(&mut self, id: ChunkId) {
        self.ghost.push_back(id);
        self.ghost_set.insert(id);
        let limit = self.entries.len().max(16);
        while self.ghost.len() > limit {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hits of a hot set that is read, then a scan of one-time chunks as
    /// big as twice the cache, then the hot set again.
    fn hot_set_hits_after_scan(policy: Policy) -> usize {
        let mut cache = Evictor::new(policy, 100);
        let hot: Vec<ChunkId> = (0..20).map(|i| (1, i)).collect();
        for _ in 0..3 {
            for &id in &hot {
                if cache.contains(id) {
                    cache.touch(id);
                } else {
                    cache.admit(id, 1);
                }
            }
        }
        for i in 0..200 {
            cache.admit((2, i), 1);
        }
        hot.iter().filter(|&&id| cache.contains(id)).count()
    }

    #[test]
    fn a_scan_does_not_flush_the_hot_set_as_it_does_with_lru() {
        let s3 = hot_set_hits_after_scan(Policy::S3Fifo);
        let lru = hot_set_hits_after_scan(Policy::Lru);
        assert_eq!(s3, 20, "S3-FIFO keeps the whole hot set");
        assert_eq!(lru, 0, "LRU loses it");
    }

    #[test]
    fn objects_over_4_gib_are_counted_exactly() {
        let mut cache = Evictor::new(Policy::S3Fifo, 10 << 32);
        for i in 0..8 {
            cache.admit((1, i), 1 << 32);
        }
        assert_eq!(cache.used(), 8 << 32);
        let evicted = cache.admit((1, 8), 4 << 32);
        assert!(!evicted.is_empty());
        assert!(cache.used() <= 10 << 32);
    }

    proptest! {
        #[test]
        fn usage_never_exceeds_capacity(
            ops in proptest::collection::vec((0u64..40, 1u64..20, any::<bool>(), any::<bool>()), 1..400),
            lru in any::<bool>(),
        ) {
            let policy = if lru { Policy::Lru } else { Policy::S3Fifo };
            let mut cache = Evictor::new(policy, 100);
            let mut sizes = HashMap::new();
            for (key, bytes, touch, remove) in ops {
                let id = (key % 7, key);
                if remove {
                    cache.remove(id);
                } else if touch && cache.contains(id) {
                    cache.touch(id);
                } else if !cache.contains(id) {
                    sizes.insert(id, bytes);
                    cache.admit(id, bytes);
                }
                prop_assert!(cache.used() <= 100);
                let live: u64 = sizes.iter().filter(|(id, _)| cache.contains(**id)).map(|(_, b)| *b).sum();
                prop_assert_eq!(live, cache.used());
            }
        }
    }
}
