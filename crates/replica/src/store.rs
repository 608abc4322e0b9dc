//! The index of cached objects, discovery of new ones, and starting fills.
//!
//! An unknown URL is *discovered* by one origin request for the chunk the
//! first viewer needs: its response headers tell the object's length,
//! validators and whether the origin honours ranges. Viewers that ask for
//! the same URL meanwhile wait for those headers (not for the chunk), then
//! follow the chunk as it is written. Fills run in their own tasks, so a
//! viewer that leaves never stops a fill others are following.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{StatusCode, header};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fill::{self, FillError};
use crate::freshness::{self, Freshness};
use crate::object::{self, ChunkFill, Meta, Object};
use crate::origin_client::{self, OriginClient};

/// What a lookup found.
#[derive(Clone)]
pub enum Lookup {
    /// The object is cached (fully, partly, or being filled).
    Object(Arc<Object>),
    /// The cache does not handle this URL: forward the request as it is.
    Pass,
    /// The origin could not be reached or answered nonsense: 502.
    OriginFailed,
}

enum Slot {
    Known(Arc<Object>),
    Discovering(watch::Receiver<Option<Lookup>>),
}

pub struct Store {
    objects_dir: PathBuf,
    chunk_bytes: u64,
    origin: OriginClient,
    index: Mutex<HashMap<String, Slot>>,
    generation: AtomicU64,
}

impl Store {
    pub fn new(objects_dir: PathBuf, chunk_bytes: u64, origin: OriginClient) -> Store {
        Store {
            objects_dir,
            chunk_bytes,
            origin,
            index: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn origin(&self) -> &OriginClient {
        &self.origin
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the object for `key`, discovering it from the origin if needed.
    /// `hint` is the byte the viewer wants first; discovery fetches its chunk.
    pub async fn lookup(self: &Arc<Self>, key: &str, hint: u64) -> Lookup {
        let receiver = {
            let mut index = self.index();
            match index.get(key) {
                Some(Slot::Known(object)) if !object.is_invalid() && object.is_fresh() => {
                    return Lookup::Object(object.clone());
                }
                Some(Slot::Discovering(receiver)) => receiver.clone(),
                found => {
                    // Unknown or stale: one request to the origin, which
                    // everyone asking meanwhile waits for.
                    let stale = match found {
                        Some(Slot::Known(object)) if !object.is_invalid() => Some(object.clone()),
                        _ => None,
                    };
                    let (sender, receiver) = watch::channel(None);
                    index.insert(key.to_owned(), Slot::Discovering(receiver.clone()));
                    let store = self.clone();
                    let key = key.to_owned();
                    tokio::spawn(async move { store.discover(key, hint, stale, sender).await });
                    receiver
                }
            }
        };
        wait(receiver).await
    }

    /// Asks the origin for the chunk holding byte `hint` and learns the
    /// object from the answer. With a `stale` object the request is
    /// conditional: a 304 makes the stored version fresh again.
    async fn discover(
        self: Arc<Self>,
        key: String,
        hint: u64,
        stale: Option<Arc<Object>>,
        sender: watch::Sender<Option<Lookup>>,
    ) {
        let chunk = hint / self.chunk_bytes;
        let first = chunk * self.chunk_bytes;
        let last = first + self.chunk_bytes - 1;
        let conditional = stale.as_ref().map(|o| o.meta.clone());
        let requested = Instant::now();
        let response = match self
            .origin
            .fetch_conditional(&key, (first, last), conditional.as_ref())
            .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(key, error = %e, "origin unreachable");
                // RFC 9111 §4.2.4: a cache that cannot reach the origin may
                // serve what it has, unless the origin forbade it.
                let found = match stale {
                    Some(object) if !freshness::forbids_stale(&object.meta.header_map()) => {
                        Lookup::Object(object)
                    }
                    _ => Lookup::OriginFailed,
                };
                return self.finish_discovery(&key, &sender, found);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(previous) = stale {
            let same = previous.meta.same_version(
                headers.get(header::ETAG),
                headers.get(header::LAST_MODIFIED),
            );
            let same_length = origin_client::content_range(&headers).map(|r| r.total)
                == Some(previous.meta.total);
            if status == StatusCode::NOT_MODIFIED
                || (status == StatusCode::PARTIAL_CONTENT && same && same_length)
            {
                // Still the same version: fresh again, chunks kept. The
                // 304's own freshness fields win over the stored ones.
                let mut merged = previous.meta.header_map();
                for name in headers.keys() {
                    merged.remove(name);
                }
                merged.extend(headers.clone());
                previous.refresh(Freshness::of(&merged, requested));
                return self.finish_discovery(&key, &sender, Lookup::Object(previous));
            }
            tracing::info!(key, %status, "origin has a new version: dropping the cached one");
            self.invalidate(&previous);
        }
        if !origin_client::storable(status, &headers) {
            tracing::debug!(key, %status, "not cacheable: passing through");
            return self.finish_discovery(&key, &sender, Lookup::Pass);
        }
        let etag = headers.get(header::ETAG).cloned();
        let last_modified = headers.get(header::LAST_MODIFIED).cloned();
        let has_validator = etag
            .as_ref()
            .is_some_and(|e| !e.as_bytes().starts_with(b"W/"))
            || last_modified.is_some();

        let (total, body_starts_at) = if status == StatusCode::PARTIAL_CONTENT {
            match origin_client::content_range(&headers) {
                Some(range) if range.first == first && range.last == last.min(range.total - 1) => {
                    (range.total, Some(chunk))
                }
                _ => {
                    tracing::warn!(key, "origin sent a Content-Range that was not asked for");
                    return self.finish_discovery(&key, &sender, Lookup::Pass);
                }
            }
        } else {
            // 200: the origin ignores ranges and sends the whole object.
            match origin_client::content_length(&headers) {
                Some(total) => (total, Some(0)),
                None => return self.finish_discovery(&key, &sender, Lookup::Pass),
            }
        };
        let ranged = status == StatusCode::PARTIAL_CONTENT && has_validator;
        let meta = Meta {
            total,
            etag,
            last_modified,
            headers: origin_client::replayed_headers(&headers),
            ranged,
        };
        let object = match self
            .create(&key, meta, Freshness::of(&headers, requested))
            .await
        {
            Ok(object) => object,
            Err(e) => {
                tracing::error!(key, error = %e, "cannot create the object directory");
                return self.finish_discovery(&key, &sender, Lookup::Pass);
            }
        };

        // Claim what this response will carry before anyone can see the
        // object, so no second fill of the same chunk can start.
        let run = match (ranged, body_starts_at) {
            (true, Some(chunk)) => Some((chunk, vec![object.claim(chunk)])),
            (false, Some(0)) if status == StatusCode::OK => Some((
                0,
                (0..object.chunk_count()).map(|c| object.claim(c)).collect(),
            )),
            _ => None,
        };
        self.finish_discovery(&key, &sender, Lookup::Object(object.clone()));
        match run {
            Some((first, claimed)) => {
                if let Err(e) =
                    fill::write_run(&object, first, &claimed, response.bytes_stream()).await
                {
                    tracing::warn!(key, error = %e, "fill failed");
                }
            }
            None => {
                // A 206 without validators: only one whole-object response
                // is sure to be one version.
                drop(response);
                self.fill(&object, 0, object.chunk_count().saturating_sub(1));
            }
        }
    }

    fn finish_discovery(&self, key: &str, sender: &watch::Sender<Option<Lookup>>, found: Lookup) {
        {
            let mut index = self.index();
            match &found {
                Lookup::Object(object) => {
                    index.insert(key.to_owned(), Slot::Known(object.clone()));
                }
                _ => {
                    index.remove(key);
                }
            }
        }
        sender.send_replace(Some(found));
    }

    async fn create(
        &self,
        key: &str,
        meta: Meta,
        freshness: Freshness,
    ) -> std::io::Result<Arc<Object>> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let dir = object::dir_for(&self.objects_dir, key, &meta, generation);
        let create = dir.clone();
        fill::blocking(move || std::fs::create_dir_all(create)).await?;
        Ok(Arc::new(Object::new(
            key.to_owned(),
            meta,
            dir,
            self.chunk_bytes,
            freshness,
        )))
    }

    /// Makes sure chunks `first..=last` are ready or filling, starting fills
    /// for the missing ones. Consecutive missing chunks share one origin
    /// request, so a sequential fill pays the origin's first-byte latency
    /// once per run, not once per chunk.
    pub fn fill(self: &Arc<Self>, object: &Arc<Object>, first: u64, last: u64) {
        if object.chunk_count() == 0 || object.is_invalid() {
            return;
        }
        let last = last.min(object.chunk_count() - 1);
        if !object.meta.ranged {
            // Whole-object origins refill every missing chunk in one response.
            let claimed: Vec<_> = (0..object.chunk_count()).map(|c| object.claim(c)).collect();
            if claimed.iter().any(Option::is_some) {
                self.spawn_run(object.clone(), 0, claimed, false);
            }
            return;
        }
        let mut run: Option<(u64, Vec<Option<Arc<ChunkFill>>>)> = None;
        for index in first..=last {
            match object.claim(index) {
                Some(fill) => match &mut run {
                    Some((_, claimed)) => claimed.push(Some(fill)),
                    None => run = Some((index, vec![Some(fill)])),
                },
                None => {
                    if let Some((start, claimed)) = run.take() {
                        self.spawn_run(object.clone(), start, claimed, true);
                    }
                }
            }
        }
        if let Some((start, claimed)) = run {
            self.spawn_run(object.clone(), start, claimed, true);
        }
    }

    fn spawn_run(
        self: &Arc<Self>,
        object: Arc<Object>,
        first: u64,
        claimed: Vec<Option<Arc<ChunkFill>>>,
        ranged: bool,
    ) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.run(&object, first, &claimed, ranged).await {
                tracing::warn!(key = object.key, first, chunks = claimed.len(), error = %e, "fill failed");
            }
        });
    }

    async fn run(
        &self,
        object: &Arc<Object>,
        first: u64,
        claimed: &[Option<Arc<ChunkFill>>],
        ranged: bool,
    ) -> Result<(), FillError> {
        let last = first + claimed.len() as u64 - 1;
        let (start, _) = object.chunk_span(first);
        let (last_start, last_len) = object.chunk_span(last);
        let end = last_start + last_len - 1;
        let range = ranged.then_some((start, end));
        let if_range = object.meta.if_range();
        let response = match self
            .origin
            .fetch(&object.key, range, if_range.as_ref())
            .await
        {
            Ok(response) => response,
            Err(e) => {
                fill::fail_all(object, first, claimed);
                return Err(e.into());
            }
        };
        if let Err(e) = self.check(object, &response, range) {
            fill::fail_all(object, first, claimed);
            if matches!(e, FillError::Mismatch(_)) {
                tracing::info!(
                    key = object.key,
                    "origin's object changed: dropping the cached version"
                );
                self.invalidate(object);
            }
            return Err(e);
        }
        fill::write_run(object, first, claimed, response.bytes_stream()).await
    }

    /// Checks that a fill response carries exactly the asked bytes of the
    /// cached version.
    fn check(
        &self,
        object: &Object,
        response: &reqwest::Response,
        range: Option<(u64, u64)>,
    ) -> Result<(), FillError> {
        let headers = response.headers();
        let same = object.meta.same_version(
            headers.get(header::ETAG),
            headers.get(header::LAST_MODIFIED),
        );
        match (response.status(), range) {
            (StatusCode::PARTIAL_CONTENT, Some((start, end))) => {
                let expected = origin_client::ContentRange {
                    first: start,
                    last: end,
                    total: object.meta.total,
                };
                if origin_client::content_range(headers) != Some(expected) {
                    return Err(FillError::Mismatch("Content-Range differs".into()));
                }
                if !same {
                    return Err(FillError::Mismatch("validator differs".into()));
                }
                Ok(())
            }
            // If-Range failed: the origin sends the whole new version.
            (StatusCode::OK, Some(_)) => Err(FillError::Mismatch("If-Range did not match".into())),
            (StatusCode::OK, None) => {
                if origin_client::content_length(headers) != Some(object.meta.total) || !same {
                    return Err(FillError::Mismatch("length or validator differs".into()));
                }
                Ok(())
            }
            (status, _) => Err(FillError::Status(status)),
        }
    }

    /// Drops an object that is no longer the origin's version.
    pub fn invalidate(&self, object: &Arc<Object>) {
        object.invalidate();
        {
            let mut index = self.index();
            if let Some(Slot::Known(current)) = index.get(&object.key)
                && Arc::ptr_eq(current, object)
            {
                index.remove(&object.key);
            }
        }
        let dir = object.dir.clone();
        tokio::spawn(fill::blocking(move || std::fs::remove_dir_all(dir)));
    }
}

async fn wait(mut receiver: watch::Receiver<Option<Lookup>>) -> Lookup {
    match receiver.wait_for(Option::is_some).await {
        Ok(found) => found.clone().unwrap_or(Lookup::OriginFailed),
        Err(_) => Lookup::OriginFailed,
    }
}
