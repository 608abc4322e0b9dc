//! Streaming a byte range of an object to one viewer.
//!
//! A pump task per viewer walks the chunks of the range. A ready chunk is
//! read from its file; a filling chunk is followed: read up to the length
//! its fill has published, then wait for more. Blocks go through a channel
//! of one, so a viewer that stops reading stops its pump (back-pressure from
//! the socket) and holds a few blocks at most, while the fill it follows
//! carries on for everyone else.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::fill::blocking;
use crate::object::{Chunk, ChunkFill, FillEnd, Object};
use crate::store::Store;

/// What a pump needs besides the range.
#[derive(Clone)]
pub struct Pump {
    pub store: Arc<Store>,
    pub read_block_bytes: u64,
    pub read_ahead_chunks: u64,
}

impl Pump {
    /// A response body carrying bytes `start..=end` of `object`. If the
    /// bytes cannot all be delivered the body ends with an error, so the
    /// viewer sees an aborted transfer, never a short one.
    pub fn body(&self, object: Arc<Object>, start: u64, end: u64) -> Body {
        // One block waits in the channel while the viewer's connection
        // sends the previous one: enough to keep a fast viewer busy, and
        // what bounds a slow viewer's memory.
        let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(1);
        let pump = self.clone();
        tokio::spawn(async move {
            let _active = crate::stats::StreamGuard::new(pump.store.stats());
            if let Err(e) = pump.run(&object, start, end, &sender).await {
                tracing::warn!(key = object.key, start, end, error = %e, "aborting a response");
                let _ = sender.send(Err(e)).await;
            }
        });
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Body::from_stream(stream)
    }

    async fn run(
        &self,
        object: &Arc<Object>,
        start: u64,
        end: u64,
        sender: &mpsc::Sender<io::Result<Bytes>>,
    ) -> io::Result<()> {
        let chunk_bytes = object.chunk_bytes;
        let last_chunk = end / chunk_bytes;
        let mut position = start;
        while position <= end {
            let index = position / chunk_bytes;
            // This chunk and the read-ahead after it, within the range.
            let ahead = (index + self.read_ahead_chunks).min(last_chunk);
            self.store.fill(object, index, ahead);

            let (chunk_start, chunk_len) = object.chunk_span(index);
            let from = position - chunk_start;
            let to = (end - chunk_start + 1).min(chunk_len);
            let delivered = self.chunk(object, index, from, to, sender).await?;
            if !delivered {
                return Ok(()); // the viewer went away
            }
            position = chunk_start + to;
        }
        Ok(())
    }

    /// Sends bytes `from..to` of chunk `index`. Returns false when the viewer
    /// has gone.
    async fn chunk(
        &self,
        object: &Arc<Object>,
        index: u64,
        from: u64,
        to: u64,
        sender: &mpsc::Sender<io::Result<Bytes>>,
    ) -> io::Result<bool> {
        // A ready chunk can vanish (evicted, or its object invalidated)
        // between the state check and the open; a lost chunk is refilled
        // once before giving up.
        for _ in 0..2 {
            if object.is_invalid() {
                return Err(io::Error::other(
                    "the origin's object changed during the response",
                ));
            }
            match object.state(index) {
                Chunk::Ready => {
                    self.store.touch(object, index);
                    let path = object.chunk_path(index);
                    match blocking(move || std::fs::File::open(path)).await {
                        Ok(file) => return self.send_file(Arc::new(file), from, to, sender).await,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            object.lost(index);
                            self.store.fill(object, index, index);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Chunk::Filling(fill) => return self.follow(&fill, from, to, sender).await,
                Chunk::Missing => self.store.fill(object, index, index),
            }
        }
        Err(io::Error::other("chunk could not be filled"))
    }

    async fn send_file(
        &self,
        file: Arc<std::fs::File>,
        mut from: u64,
        to: u64,
        sender: &mpsc::Sender<io::Result<Bytes>>,
    ) -> io::Result<bool> {
        while from < to {
            let bytes = self.read(&file, from, to).await?;
            from += bytes.len() as u64;
            if !self.send(sender, bytes).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Follows a chunk being filled, sending bytes as they are published.
    async fn follow(
        &self,
        fill: &Arc<ChunkFill>,
        mut from: u64,
        to: u64,
        sender: &mpsc::Sender<io::Result<Bytes>>,
    ) -> io::Result<bool> {
        let mut progress = fill.progress.subscribe();
        while from < to {
            let now = *progress.borrow_and_update();
            if now.end == FillEnd::Failed {
                return Err(io::Error::other("the origin transfer of this chunk failed"));
            }
            if now.written > from {
                let file = fill
                    .file
                    .get()
                    .cloned()
                    .ok_or_else(|| io::Error::other("fill published bytes before its file"))?;
                let bytes = self.read(&file, from, to.min(now.written)).await?;
                from += bytes.len() as u64;
                if !self.send(sender, bytes).await {
                    return Ok(false);
                }
                continue;
            }
            if now.end == FillEnd::Complete {
                return Err(io::Error::other("chunk completed shorter than its length"));
            }
            if progress.changed().await.is_err() {
                return Err(io::Error::other("chunk fill went away"));
            }
        }
        Ok(true)
    }

    /// Sends a block to the viewer; false if the viewer has gone.
    async fn send(&self, sender: &mpsc::Sender<io::Result<Bytes>>, bytes: Bytes) -> bool {
        let len = bytes.len() as u64;
        let sent = sender.send(Ok(bytes)).await.is_ok();
        if sent {
            self.store.stats().bytes_served.inc_by(len);
        }
        sent
    }

    /// Reads at most one block of `from..to`.
    async fn read(&self, file: &Arc<std::fs::File>, from: u64, to: u64) -> io::Result<Bytes> {
        let len = (to - from).min(self.read_block_bytes) as usize;
        let file = file.clone();
        // Allocated here, on a runtime thread, not on the blocking pool:
        // blocks allocated on dozens of pool threads and freed on the
        // runtime's scatter over as many malloc arenas, and with hundreds
        // of viewers that doubled the replica's memory.
        let mut buffer = vec![0u8; len];
        // Hot chunks are in the page cache: read them right here, without
        // a round trip through the blocking pool (which cost four context
        // switches per block on cached hits). RWF_NOWAIT fails instead of
        // waiting for the disk; only then does the read go to the pool.
        if let Ok(n) = rustix::io::preadv2(
            &*file,
            &mut [std::io::IoSliceMut::new(&mut buffer)],
            from,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) && n == len
        {
            return Ok(Bytes::from(buffer));
        }
        let buffer = blocking(move || {
            file.read_exact_at(&mut buffer, from)?;
            Ok(buffer)
        })
        .await?;
        Ok(Bytes::from(buffer))
    }
}
