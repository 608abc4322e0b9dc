//! The cache's layout on disk, and rebuilding the index from it.
//!
//! ```text
//! <cache_dir>/objects/<xx>/<key hash>-<version hash>-<stamp>/meta.json
//!                                                          /c0, c1, ...
//! <cache_dir>/trash/...      objects being deleted
//! ```
//!
//! `meta.json` is written (synced, renamed into place) before any chunk of
//! the object, and a chunk file gets its final name only once complete and
//! synced (see `fill`). So after a crash at any moment, every `c<N>` file of
//! the right length next to a readable `meta.json` is a verified chunk of
//! that version; anything else (part files, temp files, directories without
//! metadata, chunks of the wrong length) is removed at start. An object is
//! dropped by renaming its directory into `trash/` (atomic), so a crash
//! never brings back a version the replica had already let go.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::freshness::Freshness;
use crate::object::{self, Meta};

pub const META_FILE: &str = "meta.json";
/// `meta.json` of a 200, readable by every version of vcdn.
const FORMAT: u32 = 1;
/// `meta.json` of another stored status (a 404...): a version that does not
/// know `status` drops it instead of replaying its body as a 200.
const FORMAT_WITH_STATUS: u32 = 2;

/// What `meta.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct MetaFile {
    pub format: u32,
    pub key: String,
    pub total: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub headers: Vec<(String, String)>,
    pub ranged: bool,
    pub chunk_bytes: u64,
    /// When the stored response was received, in Unix milliseconds.
    pub received_unix_ms: u64,
    pub initial_age_ms: u64,
    pub lifetime_ms: u64,
    /// The request header values of a variant (see `variant`).
    #[serde(default)]
    pub vary: Vec<(String, Option<String>)>,
    /// The stored response's status (200 for content).
    #[serde(default = "ok")]
    pub status: u16,
}

fn ok() -> u16 {
    200
}

impl MetaFile {
    pub fn new(key: &str, meta: &Meta, chunk_bytes: u64, freshness: &Freshness) -> MetaFile {
        let text =
            |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned);
        let received = SystemTime::now()
            .checked_sub(freshness.received.elapsed())
            .unwrap_or(UNIX_EPOCH);
        MetaFile {
            format: if meta.status == http::StatusCode::OK {
                FORMAT
            } else {
                FORMAT_WITH_STATUS
            },
            key: key.to_owned(),
            total: meta.total,
            etag: text(&meta.etag),
            last_modified: text(&meta.last_modified),
            headers: meta
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            ranged: meta.ranged,
            chunk_bytes,
            received_unix_ms: unix_ms(received),
            initial_age_ms: freshness.initial_age.as_millis() as u64,
            lifetime_ms: freshness.lifetime.as_millis() as u64,
            vary: meta
                .vary
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect(),
            status: meta.status.as_u16(),
        }
    }

    fn meta(&self) -> Option<Meta> {
        let value = |s: &Option<String>| s.as_deref().map(HeaderValue::from_str).transpose().ok();
        Some(Meta {
            status: http::StatusCode::from_u16(self.status).ok()?,
            total: self.total,
            etag: value(&self.etag)?,
            last_modified: value(&self.last_modified)?,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?,
            ranged: self.ranged,
            vary: self
                .vary
                .iter()
                .map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v.clone())))
                .collect::<Option<Vec<_>>>()?,
        })
    }

    fn freshness(&self) -> Freshness {
        let received_at = UNIX_EPOCH + Duration::from_millis(self.received_unix_ms);
        let since = SystemTime::now()
            .duration_since(received_at)
            .unwrap_or_default();
        match tokio::time::Instant::now().checked_sub(since) {
            Some(received) => Freshness {
                received,
                initial_age: Duration::from_millis(self.initial_age_ms),
                lifetime: Duration::from_millis(self.lifetime_ms),
            },
            // Older than this machine's uptime: certainly stale.
            None => Freshness {
                received: tokio::time::Instant::now(),
                initial_age: since,
                lifetime: Duration::ZERO,
            },
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `meta.json` into `dir` atomically and durably.
pub fn write_meta(dir: &Path, meta: &MetaFile) -> io::Result<()> {
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let tmp = dir.join("meta.json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    std::fs::rename(tmp, dir.join(META_FILE))
}

/// A unique directory-name stamp, also across restarts.
pub fn stamp() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Moves an object directory into the trash, atomically, so neither this
/// run nor a restart sees it as an object again; returns where it went (or
/// `dir` itself if it cannot be moved). One rename: cheap enough to call
/// anywhere. [`delete`] removes it.
pub fn move_to_trash(cache_dir: &Path, dir: &Path) -> PathBuf {
    let trash = cache_dir.join("trash").join(stamp());
    match std::fs::rename(dir, &trash) {
        Ok(()) => trash,
        Err(_) => dir.to_owned(),
    }
}

/// Deletes a discarded object directory. Blocking.
pub fn delete(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Moves an object directory into the trash and deletes it. Blocking.
fn discard(cache_dir: &Path, dir: &Path) {
    delete(&move_to_trash(cache_dir, dir));
}

/// An object found on disk at start.
pub struct Loaded {
    pub key: String,
    pub meta: Meta,
    pub freshness: Freshness,
    pub dir: PathBuf,
    /// Ready chunks and when they were written.
    pub ready: Vec<(u64, SystemTime)>,
}

/// What a rebuild found and removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub objects: usize,
    pub chunks: usize,
    pub removed_files: usize,
    pub removed_objects: usize,
}

/// Prepares `<cache_dir>/objects` and `trash`, removes leftovers, and
/// returns every verified object. Blocking.
pub fn rebuild(cache_dir: &Path, chunk_bytes: u64) -> io::Result<(Vec<Loaded>, Report)> {
    let objects_dir = cache_dir.join("objects");
    let trash = cache_dir.join("trash");
    std::fs::create_dir_all(&objects_dir)?;
    std::fs::create_dir_all(&trash)?;
    for entry in std::fs::read_dir(&trash)?.flatten() {
        let _ = std::fs::remove_dir_all(entry.path());
    }

    let mut report = Report::default();
    let mut newest: HashMap<String, Loaded> = HashMap::new();
    for shard in std::fs::read_dir(&objects_dir)?.flatten() {
        let Ok(dirs) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for dir in dirs.flatten() {
            let dir = dir.path();
            let Some(loaded) = load_object(&dir, chunk_bytes, &mut report) else {
                discard(cache_dir, &dir);
                report.removed_objects += 1;
                continue;
            };
            // Two versions of one URL: a crash came between storing the new
            // one and dropping the old. The newer wins.
            let older = match newest.remove(&loaded.key) {
                Some(other) if other.freshness.received > loaded.freshness.received => {
                    newest.insert(other.key.clone(), other);
                    loaded
                }
                Some(other) => {
                    newest.insert(loaded.key.clone(), loaded);
                    other
                }
                None => {
                    newest.insert(loaded.key.clone(), loaded);
                    continue;
                }
            };
            discard(cache_dir, &older.dir);
            report.removed_objects += 1;
        }
    }
    let loaded: Vec<Loaded> = newest.into_values().collect();
    report.objects = loaded.len();
    report.chunks = loaded.iter().map(|l| l.ready.len()).sum();
    Ok((loaded, report))
}

fn load_object(dir: &Path, chunk_bytes: u64, report: &mut Report) -> Option<Loaded> {
    let bytes = std::fs::read(dir.join(META_FILE)).ok()?;
    let file: MetaFile = serde_json::from_slice(&bytes).ok()?;
    if !(file.format == FORMAT || file.format == FORMAT_WITH_STATUS)
        || file.chunk_bytes != chunk_bytes
    {
        return None;
    }
    let meta = file.meta()?;
    let count = object::chunk_count(meta.total, chunk_bytes);
    let mut ready = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == META_FILE {
            continue;
        }
        let index = name.strip_prefix('c').and_then(|n| n.parse::<u64>().ok());
        let expected = index.filter(|&i| i < count).map(|i| {
            let start = i * chunk_bytes;
            chunk_bytes.min(meta.total - start)
        });
        match (index, expected, entry.metadata()) {
            (Some(index), Some(len), Ok(m)) if m.is_file() && m.len() == len => {
                ready.push((index, m.modified().unwrap_or(UNIX_EPOCH)));
            }
            _ => {
                let _ = std::fs::remove_file(entry.path());
                report.removed_files += 1;
            }
        }
    }
    Some(Loaded {
        key: file.key.clone(),
        freshness: file.freshness(),
        meta,
        dir: dir.to_owned(),
        ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(total: u64) -> Meta {
        Meta {
            status: http::StatusCode::OK,
            total,
            etag: Some(HeaderValue::from_static("\"v1\"")),
            last_modified: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("video/mp4"),
            )],
            ranged: true,
            vary: vec![(http::header::ACCEPT_LANGUAGE, Some("fr".into()))],
        }
    }

    fn fresh() -> Freshness {
        Freshness {
            received: tokio::time::Instant::now(),
            initial_age: Duration::ZERO,
            lifetime: Duration::from_secs(60),
        }
    }

    #[test]
    fn only_complete_chunks_with_metadata_survive_a_rebuild() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("objects/aa/obj");
        std::fs::create_dir_all(&dir).unwrap();
        write_meta(&dir, &MetaFile::new("/v.mp4", &meta(10), 4, &fresh())).unwrap();
        std::fs::write(dir.join("c0"), b"0123").unwrap(); // complete
        std::fs::write(dir.join("c1"), b"45").unwrap(); // short: removed
        std::fs::write(dir.join("c2.part"), b"89").unwrap(); // unfinished: removed
        std::fs::write(dir.join("c2"), b"89").unwrap(); // last chunk: 2 bytes
        let orphan = cache.path().join("objects/bb/orphan");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::write(orphan.join("c0"), b"xxxx").unwrap();

        let (loaded, report) = rebuild(cache.path(), 4).unwrap();
        assert_eq!(loaded.len(), 1);
        let mut ready: Vec<u64> = loaded[0].ready.iter().map(|(i, _)| *i).collect();
        ready.sort();
        assert_eq!(ready, [0, 2]);
        assert_eq!(report.removed_files, 2);
        assert!(!orphan.exists(), "a directory without metadata is removed");
        assert_eq!(loaded[0].meta.headers, meta(10).headers);
        assert_eq!(
            loaded[0].meta.vary,
            meta(10).vary,
            "variants survive restarts"
        );
    }

    #[test]
    fn a_changed_chunk_size_drops_the_old_objects() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("objects/aa/obj");
        std::fs::create_dir_all(&dir).unwrap();
        write_meta(&dir, &MetaFile::new("/v.mp4", &meta(10), 4, &fresh())).unwrap();
        let (loaded, _) = rebuild(cache.path(), 8).unwrap();
        assert!(loaded.is_empty());
        assert!(!dir.exists());
    }

    #[test]
    fn a_stored_404_survives_a_restart_as_a_404() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("objects/aa/obj");
        std::fs::create_dir_all(&dir).unwrap();
        let not_found = Meta {
            status: http::StatusCode::NOT_FOUND,
            etag: None,
            ..meta(3)
        };
        let file = MetaFile::new("/gone.mp4", &not_found, 4, &fresh());
        assert_eq!(file.format, FORMAT_WITH_STATUS, "older versions skip it");
        write_meta(&dir, &file).unwrap();
        std::fs::write(dir.join("c0"), b"404").unwrap();
        let (loaded, _) = rebuild(cache.path(), 4).unwrap();
        assert_eq!(loaded[0].meta.status, http::StatusCode::NOT_FOUND);
    }
}
