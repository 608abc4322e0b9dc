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

use crate::object::{ChunkFill, Object};

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

/// Writes `body`, which starts at the first byte of chunk `first`, into the
/// chunks `first..first + claimed.len()`. `claimed[i]` is the fill of chunk
/// `first + i`, or `None` to read past it.
pub async fn write_run<S>(
    object: &Arc<Object>,
    first: u64,
    claimed: &[Option<Arc<ChunkFill>>],
    mut body: S,
) -> Result<(), FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let mut pending = Bytes::new();
    for (offset, fill) in claimed.iter().enumerate() {
        let index = first + offset as u64;
        let (_, len) = object.chunk_span(index);
        let result = match fill {
            Some(fill) => write_chunk(object, index, fill, len, &mut body, &mut pending).await,
            None => skip(len, &mut body, &mut pending).await,
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
pub fn fail_all(object: &Object, first: u64, claimed: &[Option<Arc<ChunkFill>>]) {
    for (offset, fill) in claimed.iter().enumerate() {
        if let Some(fill) = fill {
            object.fail(first + offset as u64, fill);
        }
    }
}

async fn write_chunk<S>(
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
        let bytes = next_bytes(body, pending, len - written).await?;
        let n = bytes.len() as u64;
        let at = written;
        let target = file.clone();
        blocking(move || target.write_all_at(&bytes, at)).await?;
        written += n;
        fill.progress.send_modify(|p| p.written = written);
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
    object.complete(index, fill);
    Ok(())
}

async fn skip<S>(len: u64, body: &mut S, pending: &mut Bytes) -> Result<(), FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let mut skipped = 0;
    while skipped < len {
        skipped += next_bytes(body, pending, len - skipped).await?.len() as u64;
    }
    Ok(())
}

/// Up to `max` (> 0) bytes of the body, as soon as any are there.
async fn next_bytes<S>(body: &mut S, pending: &mut Bytes, max: u64) -> Result<Bytes, FillError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    while pending.is_empty() {
        match body.next().await {
            Some(Ok(bytes)) => *pending = bytes,
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
