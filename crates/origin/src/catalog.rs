//! `GET /api/videos`: the videos in the folder, as JSON.
//!
//! The folder is walked on every request, so files added or removed show up
//! at once without a restart or a watcher. What is costly, the duration read
//! from an MP4 header, is remembered per file and re-read only when the
//! file's size or modification time changes. The walk is bounded in depth
//! and in files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

/// Deepest folder nesting the walk descends into.
const MAX_DEPTH: usize = 16;

/// One listed video.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// URL path of the file, e.g. `/sample.mp4` or `/show/index.m3u8`.
    pub path: String,
    pub size: u64,
    pub content_type: &'static str,
    pub etag: String,
    /// Modification time, RFC 3339 in UTC.
    pub modified: String,
    /// Playing time in seconds, for MP4 files with a readable header.
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub videos: Vec<Entry>,
    /// True when the walk stopped at the configured maximum.
    pub truncated: bool,
}

/// Remembered durations, keyed by file and invalidated by size and mtime.
type DurationCache = HashMap<PathBuf, (u64, Option<SystemTime>, Option<f64>)>;

pub struct Catalog {
    root: PathBuf,
    max_files: usize,
    durations: Arc<Mutex<DurationCache>>,
}

impl Catalog {
    pub fn new(root: PathBuf, max_files: usize) -> Catalog {
        Catalog {
            root,
            max_files,
            durations: Arc::default(),
        }
    }

    /// Walks the folder. Blocking: call from a blocking context.
    pub fn list(&self) -> Listing {
        let mut files = Vec::new();
        let mut truncated = false;
        walk(
            &self.root,
            &self.root,
            0,
            self.max_files,
            &mut files,
            &mut truncated,
        );
        files.sort();

        let mut cache = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(files.len());
        let mut videos = Vec::with_capacity(files.len());
        for file in files {
            let Ok(metadata) = std::fs::metadata(&file) else {
                continue; // removed while walking
            };
            let modified = metadata.modified().ok();
            let content_type = crate::content_type::for_path(&file);
            let duration = match cache.get(&file) {
                Some(&(size, mtime, duration)) if size == metadata.len() && mtime == modified => {
                    duration
                }
                _ if content_type == "video/mp4" || content_type == "video/quicktime" => {
                    std::fs::File::open(&file)
                        .ok()
                        .and_then(|mut f| crate::mp4::duration_seconds(&mut f))
                }
                _ => None,
            };
            seen.insert(file.clone(), (metadata.len(), modified, duration));
            let Ok(relative) = file.strip_prefix(&self.root) else {
                continue;
            };
            videos.push(Entry {
                path: url_path(relative),
                size: metadata.len(),
                content_type,
                etag: crate::file::etag(&metadata).to_header_string(),
                modified: modified.map(rfc3339).unwrap_or_default(),
                duration_seconds: duration,
            });
        }
        *cache = seen;
        Listing { videos, truncated }
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    max_files: usize,
    out: &mut Vec<PathBuf>,
    truncated: &mut bool,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= max_files {
            *truncated = true;
            return;
        }
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks only to places inside the folder, as serving does.
        let Ok(real) = std::fs::canonicalize(entry.path()) else {
            continue;
        };
        if !real.starts_with(root) {
            continue;
        }
        let path = entry.path();
        if real.is_dir() {
            if depth < MAX_DEPTH && !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                walk(root, &path, depth + 1, max_files, out, truncated);
            }
        } else if real.is_file() && crate::content_type::is_listed(&path) {
            out.push(path);
        }
    }
}

/// The URL path of a file relative to the folder, percent-encoded.
fn url_path(relative: &Path) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'?')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    let mut out = String::new();
    for component in relative.iter() {
        out.push('/');
        out.extend(utf8_percent_encode(&component.to_string_lossy(), SEGMENT));
    }
    out
}

fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn handler(State(state): State<Arc<crate::State>>) -> Response {
    let state = state.clone();
    match tokio::task::spawn_blocking(move || state.catalog.list()).await {
        Ok(listing) => Json(listing).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "catalog walk failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_are_encoded_per_segment() {
        assert_eq!(url_path(Path::new("a b/c#1.mp4")), "/a%20b/c%231.mp4");
    }
}
