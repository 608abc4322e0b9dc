//! One cached object: a version of one URL, stored as fixed-size chunks.
//!
//! The object owns the state of each chunk (missing, filling, ready) behind
//! one mutex; transitions are the only way chunks change, so at most one
//! fill exists per chunk and a chunk is ready only after its fill completed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderName, HeaderValue};
use tokio::sync::watch;
use vcdn_http::conditional::{ETag, Validators};

use crate::freshness::Freshness;

/// What identifies one version of a URL, and what is replayed to viewers.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The stored response's status: 200 for content (the origin's 206s
    /// are parts of it), or another storable status such as 404, whose
    /// body is replayed whole.
    pub status: http::StatusCode,
    /// Length of the whole representation in bytes.
    pub total: u64,
    /// The origin's `ETag`, exactly as sent.
    pub etag: Option<HeaderValue>,
    /// The origin's `Last-Modified`, exactly as sent.
    pub last_modified: Option<HeaderValue>,
    /// End-to-end response headers replayed on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether chunks are fetched one range at a time. False for origins
    /// that ignore `Range` or send no validator: those are filled by one
    /// whole-object response, the only way to be sure of one version.
    pub ranged: bool,
    /// For a response with `Vary`: the request header values this variant
    /// was fetched with (empty otherwise).
    pub vary: crate::variant::Values,
}

impl Meta {
    /// The validators for conditional requests answered from the cache.
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self
                .etag
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(ETag::parse),
            last_modified: self
                .last_modified
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|s| httpdate::parse_http_date(s).ok()),
        }
    }

    /// The `If-Range` value that pins chunk requests to this version: a
    /// strong ETag, else the Last-Modified date.
    pub fn if_range(&self) -> Option<HeaderValue> {
        match (&self.etag, &self.last_modified) {
            (Some(etag), _) if !etag.as_bytes().starts_with(b"W/") => Some(etag.clone()),
            (_, Some(date)) => Some(date.clone()),
            _ => None,
        }
    }

    /// Whether a response's validators name this same version.
    pub fn same_version(
        &self,
        etag: Option<&HeaderValue>,
        last_modified: Option<&HeaderValue>,
    ) -> bool {
        match &self.etag {
            Some(ours) => etag == Some(ours),
            None => self.last_modified.as_ref() == last_modified,
        }
    }

    /// The stored headers as a map.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// A stable name for this version, used in the object's directory name.
    pub fn version_tag(&self) -> String {
        let mut text = self.total.to_string();
        for value in [&self.etag, &self.last_modified].into_iter().flatten() {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        text
    }
}

/// Progress of a chunk fill, published to every follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the chunk written to the part file so far.
    pub written: u64,
    pub end: FillEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillEnd {
    Running,
    /// All bytes arrived, were checked and the chunk is ready.
    Complete,
    /// The transfer broke or the response did not check out.
    Failed,
}

/// A chunk being written by one origin response.
#[derive(Debug)]
pub struct ChunkFill {
    /// The part file, set once the fill has created it (before any byte is
    /// published). Followers read it with positioned reads.
    pub file: OnceLock<Arc<File>>,
    pub progress: watch::Sender<Progress>,
}

impl ChunkFill {
    fn new() -> Arc<ChunkFill> {
        let (progress, _) = watch::channel(Progress {
            written: 0,
            end: FillEnd::Running,
        });
        Arc::new(ChunkFill {
            file: OnceLock::new(),
            progress,
        })
    }

    /// Marks the fill failed; followers abort.
    pub fn fail(&self) {
        self.progress.send_modify(|p| p.end = FillEnd::Failed);
    }
}

/// The state of one chunk.
#[derive(Debug, Clone)]
pub enum Chunk {
    Missing,
    Filling(Arc<ChunkFill>),
    Ready,
}

/// One version of one URL in the cache.
#[derive(Debug)]
pub struct Object {
    /// Unique in this process; names the object's chunks to the evictor.
    pub id: u64,
    pub key: String,
    pub meta: Meta,
    pub dir: PathBuf,
    pub chunk_bytes: u64,
    chunks: Mutex<Vec<Chunk>>,
    invalid: AtomicBool,
    freshness: Mutex<Freshness>,
    /// Unix seconds of the last read, for the admin listing.
    last_access: AtomicU64,
    /// The headers replayed to viewers: the stored response's, updated by
    /// 304s (RFC 9111 §4.3.4).
    headers: Mutex<Vec<(HeaderName, HeaderValue)>>,
    /// Set while a background revalidation runs, so only one does.
    revalidating: AtomicBool,
}

impl Object {
    pub fn new(
        id: u64,
        key: String,
        meta: Meta,
        dir: PathBuf,
        chunk_bytes: u64,
        freshness: Freshness,
    ) -> Object {
        let count = chunk_count(meta.total, chunk_bytes);
        Object {
            id,
            key,
            dir,
            chunk_bytes,
            chunks: Mutex::new(vec![Chunk::Missing; count as usize]),
            invalid: AtomicBool::new(false),
            freshness: Mutex::new(freshness),
            last_access: AtomicU64::new(unix_now()),
            headers: Mutex::new(meta.headers.clone()),
            revalidating: AtomicBool::new(false),
            meta,
        }
    }

    /// The headers to replay.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The headers to replay, as a map.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in self.headers() {
            map.append(name, value);
        }
        map
    }

    /// Updates the stored headers from a 304 (RFC 9111 §3.2): each field
    /// the 304 carries replaces the stored one, except those that describe
    /// the message rather than the representation.
    pub fn update_headers(&self, not_modified: &http::HeaderMap) {
        let fresh = crate::origin_client::replayed_headers(not_modified);
        let mut headers = self.headers.lock().unwrap_or_else(|p| p.into_inner());
        for (name, _) in &fresh {
            headers.retain(|(n, _)| n != name);
        }
        headers.extend(fresh);
    }

    /// Claims the one background revalidation; false if one runs.
    pub fn start_revalidating(&self) -> bool {
        !self.revalidating.swap(true, Ordering::SeqCst)
    }

    pub fn done_revalidating(&self) {
        self.revalidating.store(false, Ordering::SeqCst);
    }

    /// The stored response's age and freshness lifetime.
    pub fn age_and_lifetime(&self) -> (std::time::Duration, std::time::Duration) {
        let f = self.freshness();
        (f.age(), f.lifetime)
    }

    /// Records a read, for the admin listing.
    pub fn touch(&self) {
        self.last_access.store(unix_now(), Ordering::Relaxed);
    }

    /// Unix seconds of the last read.
    pub fn last_access(&self) -> u64 {
        self.last_access.load(Ordering::Relaxed)
    }

    /// Marks a chunk found complete on disk at start as ready.
    pub fn mark_ready(&self, index: u64) {
        if let Some(chunk) = self.lock().get_mut(index as usize) {
            *chunk = Chunk::Ready;
        }
    }

    fn freshness(&self) -> Freshness {
        *self.freshness.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the object may be served without asking the origin.
    pub fn is_fresh(&self) -> bool {
        self.freshness().is_fresh()
    }

    /// The `Age` of the stored response, in whole seconds.
    pub fn age_seconds(&self) -> u64 {
        self.freshness().age().as_secs()
    }

    /// Records a successful revalidation.
    pub fn refresh(&self, freshness: Freshness) {
        *self.freshness.lock().unwrap_or_else(|p| p.into_inner()) = freshness;
    }

    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.meta.total, self.chunk_bytes)
    }

    /// First byte and length of chunk `index`.
    pub fn chunk_span(&self, index: u64) -> (u64, u64) {
        let start = index * self.chunk_bytes;
        (start, self.chunk_bytes.min(self.meta.total - start))
    }

    pub fn chunk_path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("c{index}"))
    }

    pub fn part_path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("c{index}.part"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Chunk>> {
        // A panic while holding this lock leaves only plain data behind.
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self, index: u64) -> Chunk {
        self.lock()[index as usize].clone()
    }

    pub fn is_ready(&self, index: u64) -> bool {
        matches!(self.lock()[index as usize], Chunk::Ready)
    }

    /// Claims a missing chunk for a new fill; `None` if it is filling or
    /// ready already (or the object was invalidated).
    pub fn claim(&self, index: u64) -> Option<Arc<ChunkFill>> {
        let mut chunks = self.lock();
        // Checked under the lock: `invalidate` and `retire_if_idle` set the
        // flag under it too, so no claim slips in after them.
        if self.is_invalid() {
            return None;
        }
        match chunks[index as usize] {
            Chunk::Missing => {
                let fill = ChunkFill::new();
                chunks[index as usize] = Chunk::Filling(fill.clone());
                Some(fill)
            }
            _ => None,
        }
    }

    /// Marks a filled chunk ready and tells its followers.
    pub fn complete(&self, index: u64, fill: &ChunkFill) {
        self.set_ready(index);
        fill.progress.send_modify(|p| p.end = FillEnd::Complete);
    }

    /// Marks a chunk ready; its fill's followers are told separately.
    pub fn set_ready(&self, index: u64) {
        self.lock()[index as usize] = Chunk::Ready;
    }

    /// Returns a chunk whose fill failed to missing and tells its followers.
    pub fn fail(&self, index: u64, fill: &ChunkFill) {
        {
            let mut chunks = self.lock();
            if let Chunk::Filling(current) = &chunks[index as usize]
                && std::ptr::eq(current.as_ref(), fill)
            {
                chunks[index as usize] = Chunk::Missing;
            }
        }
        fill.fail();
    }

    /// Returns a ready chunk to missing (evicted, or its file disappeared).
    /// True if it was ready.
    pub fn lost(&self, index: u64) -> bool {
        let mut chunks = self.lock();
        if matches!(chunks[index as usize], Chunk::Ready) {
            chunks[index as usize] = Chunk::Missing;
            return true;
        }
        false
    }

    /// Retires an object none of whose chunks is ready or filling: it takes
    /// no new fills after this. True if retired.
    pub fn retire_if_idle(&self) -> bool {
        let chunks = self.lock();
        if chunks.iter().all(|c| matches!(c, Chunk::Missing)) {
            self.invalid.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Indexes of the ready chunks.
    pub fn ready_indexes(&self) -> Vec<u64> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Chunk::Ready))
            .map(|(i, _)| i as u64)
            .collect()
    }

    /// Bytes of the ready chunks.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_indexes()
            .iter()
            .map(|&i| self.chunk_span(i).1)
            .sum()
    }

    /// Marks the object as no longer the origin's current version. Fills in
    /// flight are failed, so no viewer receives another byte of it from them.
    pub fn invalidate(&self) {
        let chunks = self.lock();
        self.invalid.store(true, Ordering::SeqCst);
        for chunk in chunks.iter() {
            if let Chunk::Filling(fill) = chunk {
                fill.fail();
            }
        }
    }

    pub fn is_invalid(&self) -> bool {
        self.invalid.load(Ordering::SeqCst)
    }

    /// Bytes of the object in ready chunks.
    pub fn ready_chunks(&self) -> u64 {
        self.lock()
            .iter()
            .filter(|c| matches!(c, Chunk::Ready))
            .count() as u64
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Number of chunks of an object of `total` bytes.
pub fn chunk_count(total: u64, chunk_bytes: u64) -> u64 {
    total.div_ceil(chunk_bytes)
}

/// The chunks covering bytes `start..=end`.
pub fn chunks_covering(start: u64, end: u64, chunk_bytes: u64) -> std::ops::RangeInclusive<u64> {
    (start / chunk_bytes)..=(end / chunk_bytes)
}

/// The object directory for a key and version under `root`.
pub fn dir_for(root: &Path, key: &str, meta: &Meta, stamp: &str) -> PathBuf {
    use twox_hash::XxHash3_64;
    let key_hash = XxHash3_64::oneshot(key.as_bytes());
    let version_hash = XxHash3_64::oneshot(meta.version_tag().as_bytes());
    root.join(format!("{:02x}", key_hash >> 56))
        .join(format!("{key_hash:016x}-{version_hash:016x}-{stamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh() -> Freshness {
        Freshness {
            received: tokio::time::Instant::now(),
            initial_age: std::time::Duration::ZERO,
            lifetime: std::time::Duration::from_secs(60),
        }
    }

    fn meta(total: u64) -> Meta {
        Meta {
            status: http::StatusCode::OK,
            total,
            etag: Some(HeaderValue::from_static("\"v1\"")),
            last_modified: None,
            headers: vec![],
            ranged: true,
            vary: vec![],
        }
    }

    #[test]
    fn claims_are_exclusive_and_failures_return_to_missing() {
        let object = Object::new(1, "/a".into(), meta(10), PathBuf::from("/x"), 4, fresh());
        assert_eq!(object.chunk_count(), 3);
        assert_eq!(object.chunk_span(2), (8, 2));
        let fill = object.claim(1).unwrap();
        assert!(object.claim(1).is_none());
        object.fail(1, &fill);
        assert_eq!(fill.progress.borrow().end, FillEnd::Failed);
        let again = object.claim(1).unwrap();
        object.complete(1, &again);
        assert!(object.is_ready(1));
        assert!(object.claim(1).is_none());
    }

    #[test]
    fn invalidated_objects_take_no_new_fills() {
        let object = Object::new(1, "/a".into(), meta(10), PathBuf::from("/x"), 4, fresh());
        let fill = object.claim(0).unwrap();
        object.invalidate();
        assert_eq!(fill.progress.borrow().end, FillEnd::Failed);
        assert!(object.claim(1).is_none());
    }

    #[test]
    fn weak_etags_do_not_pin_ranges() {
        let mut m = meta(1);
        m.etag = Some(HeaderValue::from_static("W/\"v1\""));
        assert_eq!(m.if_range(), None);
        m.last_modified = Some(HeaderValue::from_static("Wed, 25 Nov 2026 00:00:00 GMT"));
        assert_eq!(m.if_range(), m.last_modified);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_object(total in 1u64..10_000_000, chunk in 1u64..3_000_000) {
            let object = Object::new(1, "/p".into(), meta(total), PathBuf::from("/x"), chunk, fresh());
            let mut next = 0;
            for i in 0..object.chunk_count() {
                let (start, len) = object.chunk_span(i);
                prop_assert_eq!(start, next);
                prop_assert!(len > 0 && len <= chunk);
                next = start + len;
            }
            prop_assert_eq!(next, total);
        }

        #[test]
        fn covering_chunks_contain_the_range(start in 0u64..1_000_000, len in 1u64..1_000_000, chunk in 1u64..100_000) {
            let end = start + len - 1;
            let covering = chunks_covering(start, end, chunk);
            prop_assert!(covering.start() * chunk <= start);
            prop_assert!((covering.end() + 1) * chunk > end);
        }
    }
}
