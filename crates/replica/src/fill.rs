//! Writing one origin response into chunk files as it arrives.
//!
//! A *run* is one origin response whose body carries consecutive chunks
//! `first..=last`. Bytes are written to each claimed chunk's part file the
//! moment they arrive and the new length is published to the chunk's
//! followers; chunks of the run that this fill did not claim (already ready,
//! or filled by someone else) are read past. A chunk becomes ready only when
//! exactly its length arrived and was synced; anything else fails it and
//! every claimed chunk after it.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use http::{StatusCode, header};

use crate::object::{ChunkFill, FillEnd, Object};
use crate::origin_client;
use crate::stats::Stats;
use crate::store::Store;

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("origin transfer failed: {0}")]
    Origin(#[from] reqwest::Error),
    #[error("origin response ended {missing} bytes short")]
    Short { missing: u64 },
    #[error("origin response does not match the cached version: {0}")]
    Mismatch(String),
    #[error("origin answered {0}")]
    Status(http::StatusCode),
    #[error("writing the cache: {0}")]
    Io(#[from] io::Error),
}

impl Store {
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
        self.stats.origin_requests.inc();
        let response = match self
            .origin
            .fetch(&object.key, range, if_range.as_ref(), &object.meta.vary)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                fail_all(object, first, claimed);
                return Err(e.into());
            }
        };
        if let Err(e) = self.check(object, &response, range) {
            fail_all(object, first, claimed);
            if matches!(e, FillError::Mismatch(_)) {
                tracing::info!(
                    key = object.key,
                    "origin's object changed: dropping the cached version"
                );
                self.invalidate(object);
            }
            return Err(e);
        }
        self.write_run(object, first, claimed, response.bytes_stream())
            .await
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
            // A whole-object refill: the same status (200, or the 404 or
            // other status stored), length and validators.
            (status, None) if status == object.meta.status => {
                if origin_client::content_length(headers) != Some(object.meta.total) || !same {
                    return Err(FillError::Mismatch("length or validator differs".into()));
                }
                Ok(())
            }
            (status, None)
                if !status.is_server_error() && origin_client::storable(status, headers) =>
            {
                Err(FillError::Mismatch(format!("status is now {status}")))
            }
            (status, _) => Err(FillError::Status(status)),
        }
    }

    /// Writes `body`, which starts at the first byte of chunk `first`, into
    /// the chunks `first..first + claimed.len()`. `claimed[i]` is the fill of
    /// chunk `first + i`, or `None` to read past it.
    pub(crate) async fn write_run<S>(
        &self,
        object: &Arc<Object>,
        first: u64,
        claimed: &[Option<Arc<ChunkFill>>],
        body: S,
    ) -> Result<(), FillError>
    where
        S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
    {
        self.stats.fills_in_progress.inc();
        self.fills.send_modify(|n| *n += 1);
        let result = write_run(self, object, first, claimed, body).await;
        self.fills.send_modify(|n| *n -= 1);
        self.stats.fills_in_progress.dec();
        result
    }
}

async fn write_run<S>(
    store: &Store,
    object: &Arc<Object>,
    first: u64,
    claimed: &[Option<Arc<ChunkFill>>],
    mut body: S,
) -> Result<(), FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let mut pending = Bytes::new();
    let stats = &store.stats;
    for (offset, fill) in claimed.iter().enumerate() {
        let index = first + offset as u64;
        let (_, len) = object.chunk_span(index);
        let result = match fill {
            Some(fill) => {
                write_chunk(store, object, index, fill, len, &mut body, &mut pending).await
            }
            None => skip(stats, len, &mut body, &mut pending).await,
        };
        if let Err(e) = result {
            for (later, fill) in claimed.iter().enumerate().skip(offset) {
                if let Some(fill) = fill {
                    let index = first + later as u64;
                    remove_part(object, index).await;
                    object.fail(index, fill);
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Fails every claimed chunk of a run that never got a usable response.
pub(crate) fn fail_all(object: &Object, first: u64, claimed: &[Option<Arc<ChunkFill>>]) {
    for (offset, fill) in claimed.iter().enumerate() {
        if let Some(fill) = fill {
            object.fail(first + offset as u64, fill);
        }
    }
}

async fn write_chunk<S>(
    store: &Store,
    object: &Arc<Object>,
    index: u64,
    fill: &Arc<ChunkFill>,
    len: u64,
    body: &mut S,
    pending: &mut Bytes,
) -> Result<(), FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let part = object.part_path(index);
    let file = blocking({
        let part = part.clone();
        move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(part)
        }
    })
    .await?;
    let file = Arc::new(file);
    // Set before any length is published: followers read through it.
    let _ = fill.file.set(file.clone());

    let mut written = 0u64;
    while written < len {
        let bytes = next_bytes(&store.stats, body, pending, len - written).await?;
        let n = bytes.len() as u64;
        let at = written;
        let target = file.clone();
        blocking(move || target.write_all_at(&bytes, at)).await?;
        written += n;
        // The last bytes are published only once the chunk is stored (see
        // below): a viewer whose response has ended can count on the next
        // request finding every chunk of it ready.
        if written < len {
            fill.progress.send_modify(|p| p.written = written);
        }
    }

    let chunk = object.chunk_path(index);
    blocking(move || {
        file.sync_data()?;
        std::fs::rename(part, chunk)
    })
    .await?;
    if object.is_invalid() {
        return Err(FillError::Mismatch("object was invalidated".into()));
    }
    object.set_ready(index);
    store.stats.chunks_filled.inc();
    store.admit(object, index, len);
    fill.progress.send_modify(|p| {
        p.written = len;
        p.end = FillEnd::Complete;
    });
    Ok(())
}

async fn skip<S>(
    stats: &Stats,
    len: u64,
    body: &mut S,
    pending: &mut Bytes,
) -> Result<(), FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let mut skipped = 0;
    while skipped < len {
        skipped += next_bytes(stats, body, pending, len - skipped).await?.len() as u64;
    }
    Ok(())
}

/// Up to `max` (> 0) bytes of the body, as soon as any are there.
async fn next_bytes<S>(
    stats: &Stats,
    body: &mut S,
    pending: &mut Bytes,
    max: u64,
) -> Result<Bytes, FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    while pending.is_empty() {
        match body.next().await {
            Some(Ok(bytes)) => {
                stats.origin_bytes.inc_by(bytes.len() as u64);
                *pending = bytes;
            }
            Some(Err(e)) => return Err(FillError::Origin(e)),
            None => return Err(FillError::Short { missing: max }),
        }
    }
    let take = (pending.len() as u64).min(max) as usize;
    Ok(pending.split_to(take))
}

async fn remove_part(object: &Object, index: u64) {
    let part = object.part_path(index);
    let _ = blocking(move || std::fs::remove_file(part)).await;
}

/// Runs file I/O on the blocking pool.
pub async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}
