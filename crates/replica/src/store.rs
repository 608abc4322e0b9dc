//! The index of cached objects and the cache's byte budget.
//!
//! The index maps a URL (path and query) to its object, or to the discovery
//! in flight for it (see `discovery`). Every ready chunk is admitted to the
//! evictor; when the cache is over its size, the evictor names chunks to
//! drop, and an object whose last chunk went is forgotten with its
//! directory. Rebuilding at start reads what `disk` left behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::disk;
use crate::eviction::{Evictor, Policy};
use crate::fill;
use crate::freshness::Freshness;
use crate::object::{Meta, Object};
use crate::origin_client::OriginClient;
use crate::request::{self, Directives, Use};
use crate::stats::Stats;
use crate::variant;

/// What a lookup found.
#[derive(Clone)]
pub enum Lookup {
    /// The object is cached (fully, partly, or being filled), and how the
    /// lookup came by it.
    Object(Arc<Object>, Found),
    /// The cache does not handle this URL: forward the request as it is.
    Pass,
    /// The origin could not be reached or answered nonsense: 502.
    OriginFailed,
    /// `only-if-cached` and nothing usable is stored: 504.
    NotCached,
}

/// How a lookup came by its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// In the index and fresh.
    Cached,
    /// Unknown until the origin answered this lookup (or one it waited on).
    Discovered,
    /// Stale, and the origin confirmed it unchanged.
    Revalidated,
    /// Stale, and served because the origin could not be reached.
    Stale,
}

pub(crate) enum Slot {
    Known(Arc<Object>),
    Discovering(watch::Receiver<Option<Lookup>>),
    /// Recently found uncacheable: pass requests through until then.
    Pass(tokio::time::Instant),
}

/// The chunks on disk: the evictor, and the objects its ids name.
struct Budget {
    evictor: Evictor,
    objects: HashMap<u64, Arc<Object>>,
}

/// One cached object, as the admin API lists it.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub path: String,
    pub bytes: u64,
    pub total_bytes: u64,
    pub chunks: u64,
    pub total_chunks: u64,
    pub last_access_unix: u64,
    pub fresh: bool,
}

pub struct Store {
    pub(crate) cache_dir: PathBuf,
    pub(crate) objects_dir: PathBuf,
    pub(crate) chunk_bytes: u64,
    pub(crate) origin: OriginClient,
    pub(crate) stats: Arc<Stats>,
    pub(crate) index: Mutex<HashMap<String, Slot>>,
    budget: Mutex<Budget>,
    next_id: AtomicU64,
    /// URLs known to vary, and the request headers they vary on.
    vary_specs: Mutex<HashMap<String, Vec<http::HeaderName>>>,
    /// Set while free disk is below the minimum: nothing new is stored.
    pub(crate) low_disk: AtomicBool,
    /// Origin responses being written, so shutdown can let them finish.
    pub(crate) fills: watch::Sender<usize>,
    /// The lifetime given to responses without explicit freshness where a
    /// heuristic one is allowed (off: the Last-Modified heuristic).
    pub(crate) default_ttl: Option<std::time::Duration>,
}

/// Disk allocation unit the budget rounds every file up to.
const DISK_BLOCK: u64 = 4096;
/// What an object costs on disk besides its chunks: its directory and
/// `meta.json`, a block each.
const OBJECT_OVERHEAD: u64 = 2 * DISK_BLOCK;

/// What a chunk counts against `cache_max_bytes`: the disk blocks it
/// takes, and for chunk 0 also its object's directory and metadata, so a
/// cache of many small objects (404 pages, thumbnails) stays within its
/// bound too. An object cached without its chunk 0 (a seek far into a
/// video) has its 8 KiB of overhead uncounted, beside at least one chunk.
pub(crate) fn disk_footprint(index: u64, bytes: u64) -> u64 {
    let blocks = bytes.div_ceil(DISK_BLOCK) * DISK_BLOCK;
    if index == 0 {
        blocks + OBJECT_OVERHEAD
    } else {
        blocks
    }
}

impl Store {
    /// Gives responses without explicit freshness this lifetime where a
    /// heuristic one is allowed (RFC 9111 §4.2.2).
    pub fn with_default_ttl(mut self, ttl: Option<std::time::Duration>) -> Store {
        self.default_ttl = ttl;
        self
    }

    /// Opens the cache in `cache_dir`, rebuilding the index from what a
    /// previous run stored. Blocking.
    pub fn open(
        cache_dir: PathBuf,
        chunk_bytes: u64,
        capacity: u64,
        policy: Policy,
        origin: OriginClient,
        stats: Arc<Stats>,
    ) -> std::io::Result<Store> {
        let started = std::time::Instant::now();
        let (loaded, report) = disk::rebuild(&cache_dir, chunk_bytes)?;
        let store = Store {
            objects_dir: cache_dir.join("objects"),
            cache_dir,
            chunk_bytes,
            origin,
            stats,
            index: Mutex::new(HashMap::new()),
            budget: Mutex::new(Budget {
                evictor: Evictor::new(policy, capacity),
                objects: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            vary_specs: Mutex::new(HashMap::new()),
            low_disk: AtomicBool::new(false),
            fills: watch::channel(0).0,
            default_ttl: None,
        };
        // Oldest chunks first, so they are the first to go if the cache
        // is now smaller than what is on disk.
        let mut ready = Vec::new();
        for loaded in loaded {
            let object = Arc::new(Object::new(
                store.next_id(),
                loaded.key.clone(),
                loaded.meta,
                loaded.dir,
                chunk_bytes,
                loaded.freshness,
            ));
            store.record_vary(
                variant::primary(&object.key),
                &variant::names(&object.meta.vary),
            );
            for (index, written) in loaded.ready {
                object.mark_ready(index);
                ready.push((written, object.clone(), index));
            }
            store.index().insert(loaded.key, Slot::Known(object));
        }
        ready.sort_by_key(|(written, _, _)| *written);
        for (_, object, index) in ready {
            let bytes = object.chunk_span(index).1;
            store.admit_sync(&object, index, bytes);
        }
        let seconds = started.elapsed().as_secs_f64();
        store.stats.index_rebuild_seconds.set(seconds);
        store.stats.cache_capacity.set(capacity as i64);
        store.update_gauges();
        tracing::info!(
            objects = report.objects,
            chunks = report.chunks,
            removed_files = report.removed_files,
            removed_objects = report.removed_objects,
            seconds,
            "cache index rebuilt from disk"
        );
        Ok(store)
    }

    pub fn origin(&self) -> &OriginClient {
        &self.origin
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn index(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no fill is writing, so chunks being fetched are kept.
    pub async fn fills_finished(&self) {
        let mut fills = self.fills.subscribe();
        let _ = fills.wait_for(|&n| n == 0).await;
    }

    pub fn is_low_disk(&self) -> bool {
        self.low_disk.load(Ordering::Relaxed)
    }

    /// Finds the object for `key`, discovering or revalidating it with the
    /// origin if needed, as the request's cache directives allow. `hint` is
    /// the byte the viewer wants first.
    pub async fn lookup(
        self: &Arc<Self>,
        primary: &str,
        hint: u64,
        request: &Directives,
        request_headers: &http::HeaderMap,
    ) -> Lookup {
        // The variant this request selects, once the URL is known to vary.
        let negotiated = variant::values(request_headers, &variant::NEGOTIATED);
        let key = match self.vary_spec(primary) {
            Some(names) => variant::key(primary, &variant::select(&negotiated, &names)),
            None => primary.to_owned(),
        };
        let key = key.as_str();
        let receiver = {
            let mut index = self.index();
            let mut stale = None;
            let mut in_flight = None;
            match index.get(key) {
                Some(Slot::Known(object)) if !object.is_invalid() => {
                    match request::decide(object, request) {
                        Use::Fresh => return Lookup::Object(object.clone(), Found::Cached),
                        Use::Stale => return Lookup::Object(object.clone(), Found::Stale),
                        Use::StaleWhileRevalidate => {
                            self.revalidate_in_background(object);
                            return Lookup::Object(object.clone(), Found::Stale);
                        }
                        Use::Revalidate => stale = Some(object.clone()),
                    }
                }
                Some(Slot::Discovering(receiver)) => in_flight = Some(receiver.clone()),
                Some(Slot::Pass(until))
                    if *until > tokio::time::Instant::now() && !request.only_if_cached =>
                {
                    return Lookup::Pass;
                }
                _ => {}
            }
            if request.only_if_cached {
                return Lookup::NotCached;
            }
            match in_flight {
                Some(receiver) => receiver,
                None => {
                    if stale.is_none() && (request.no_store || self.is_low_disk()) {
                        return Lookup::Pass;
                    }
                    // Unknown or stale: one request to the origin, which
                    // everyone asking meanwhile waits for.
                    let (sender, receiver) = watch::channel(None);
                    index.insert(key.to_owned(), Slot::Discovering(receiver.clone()));
                    let store = self.clone();
                    let key = key.to_owned();
                    tokio::spawn(async move {
                        store.discover(key, hint, stale, negotiated, sender).await
                    });
                    receiver
                }
            }
        };
        wait(receiver).await
    }

    fn vary_spec(&self, primary: &str) -> Option<Vec<http::HeaderName>> {
        self.vary_specs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(primary)
            .cloned()
    }

    /// Records what a URL varies on (nothing: forgets it).
    pub(crate) fn record_vary(&self, primary: &str, names: &[http::HeaderName]) {
        let mut specs = self.vary_specs.lock().unwrap_or_else(|p| p.into_inner());
        if names.is_empty() {
            specs.remove(primary);
        } else {
            specs.insert(primary.to_owned(), names.to_vec());
        }
    }

    /// Revalidates a stale object once, in the background, while viewers
    /// are served the stale copy (`stale-while-revalidate`).
    fn revalidate_in_background(self: &Arc<Self>, object: &Arc<Object>) {
        if !object.start_revalidating() {
            return;
        }
        let store = self.clone();
        let object = object.clone();
        tokio::spawn(async move {
            let (sender, _) = watch::channel(None);
            let key = object.key.clone();
            let negotiated = object.meta.vary.clone();
            store
                .discover(key, 0, Some(object.clone()), negotiated, sender)
                .await;
            object.done_revalidating();
        });
    }

    /// Creates a new object: its directory and metadata file.
    pub(crate) async fn create(
        &self,
        key: &str,
        meta: Meta,
        freshness: Freshness,
    ) -> std::io::Result<Arc<Object>> {
        let dir = crate::object::dir_for(&self.objects_dir, key, &meta, &disk::stamp());
        let file = disk::MetaFile::new(key, &meta, self.chunk_bytes, &freshness);
        let create = dir.clone();
        fill::blocking(move || {
            std::fs::create_dir_all(&create)?;
            disk::write_meta(&create, &file)
        })
        .await?;
        Ok(Arc::new(Object::new(
            self.next_id(),
            key.to_owned(),
            meta,
            dir,
            self.chunk_bytes,
            freshness,
        )))
    }

    /// Records a revalidation, on disk too so a restart keeps it.
    pub(crate) fn refresh(&self, object: &Arc<Object>, freshness: Freshness) {
        object.refresh(freshness);
        let mut meta = object.meta.clone();
        meta.headers = object.headers();
        let file = disk::MetaFile::new(&object.key, &meta, self.chunk_bytes, &freshness);
        let dir = object.dir.clone();
        tokio::spawn(fill::blocking(move || disk::write_meta(&dir, &file)));
    }

    /// Admits a chunk that just became ready, evicting others if the cache
    /// is over its size.
    pub(crate) fn admit(&self, object: &Arc<Object>, index: u64, bytes: u64) {
        self.admit_sync(object, index, bytes);
        self.update_gauges();
    }

    fn admit_sync(&self, object: &Arc<Object>, index: u64, bytes: u64) {
        let evicted = {
            let mut budget = self.budget();
            budget.objects.insert(object.id, object.clone());
            let victims = budget
                .evictor
                .admit((object.id, index), disk_footprint(index, bytes));
            victims
                .into_iter()
                .filter_map(|(id, index)| Some((budget.objects.get(&id)?.clone(), index)))
                .collect::<Vec<_>>()
        };
        for (victim, index) in evicted {
            self.stats.evictions.inc();
            if victim.lost(index) {
                let path = victim.chunk_path(index);
                // Viewers reading the chunk keep their open file: unlinking
                // does not cut them off.
                let _ = std::fs::remove_file(path);
            }
            if victim.retire_if_idle() {
                self.forget(&victim);
            }
        }
    }

    /// Records a read of a ready chunk.
    pub(crate) fn touch(&self, object: &Object, index: u64) {
        object.touch();
        self.budget().evictor.touch((object.id, index));
    }

    /// Drops an object that is no longer the origin's version or was purged.
    /// Fills in flight are failed and its viewers aborted.
    pub fn invalidate(&self, object: &Arc<Object>) {
        object.invalidate();
        self.forget(object);
    }

    /// Removes an object from the index and the budget and discards its
    /// directory.
    fn forget(&self, object: &Arc<Object>) {
        {
            let mut index = self.index();
            if let Some(Slot::Known(current)) = index.get(&object.key)
                && Arc::ptr_eq(current, object)
            {
                index.remove(&object.key);
            }
        }
        {
            let mut budget = self.budget();
            for index in 0..object.chunk_count() {
                budget.evictor.remove((object.id, index));
            }
            budget.objects.remove(&object.id);
        }
        self.update_gauges();
        // Out of `objects/` at once, so what is there is what the budget
        // counts; the deletion itself runs in the background.
        let doomed = disk::move_to_trash(&self.cache_dir, &object.dir);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || disk::delete(&doomed))),
            Err(_) => disk::delete(&doomed),
        }
    }

    /// Purges one path (all its query variants too) or every path under a
    /// prefix. Returns how many objects were dropped.
    pub fn purge(&self, path: Option<&str>, prefix: Option<&str>) -> usize {
        let matches = |key: &str| {
            let key = variant::primary(key);
            let key_path = key.split('?').next().unwrap_or(key);
            path.is_some_and(|p| key_path == p) || prefix.is_some_and(|p| key.starts_with(p))
        };
        let victims: Vec<Arc<Object>> = {
            let mut index = self.index();
            // Forget hit-for-pass marks too: the URL is asked about afresh.
            index.retain(|key, slot| !(matches(key) && matches!(slot, Slot::Pass(_))));
            index
                .iter()
                .filter(|(key, _)| matches(key))
                .filter_map(|(_, slot)| match slot {
                    Slot::Known(object) => Some(object.clone()),
                    _ => None,
                })
                .collect()
        };
        for object in &victims {
            self.invalidate(object);
        }
        victims.len()
    }

    /// What is cached.
    pub fn list(&self) -> Vec<Listed> {
        let mut listed: Vec<Listed> = self
            .index()
            .values()
            .filter_map(|slot| match slot {
                Slot::Known(object) => Some(Listed {
                    path: variant::primary(&object.key).to_owned(),
                    bytes: object.ready_bytes(),
                    total_bytes: object.meta.total,
                    chunks: object.ready_chunks(),
                    total_chunks: object.chunk_count(),
                    last_access_unix: object.last_access(),
                    fresh: object.is_fresh(),
                }),
                _ => None,
            })
            .collect();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        listed
    }

    pub(crate) fn update_gauges(&self) {
        let used = self.budget().evictor.used();
        self.stats.cache_bytes.set(used as i64);
        let objects = self
            .index()
            .values()
            .filter(|s| matches!(s, Slot::Known(_)))
            .count();
        self.stats.cache_objects.set(objects as i64);
    }
}

async fn wait(mut receiver: watch::Receiver<Option<Lookup>>) -> Lookup {
    match receiver.wait_for(Option::is_some).await {
        Ok(found) => found.clone().unwrap_or(Lookup::OriginFailed),
        Err(_) => Lookup::OriginFailed,
    }
}
