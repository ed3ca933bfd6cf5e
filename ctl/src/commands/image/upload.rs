//! Uploading blobs to the store: which ones it lacks (BlobStatus), then each missing one in
//! 1 MiB chunks read from disk, starting at the offset the store already holds, so a push cut
//! off by a killed slicectl or a dropped connection continues where it stopped instead of
//! starting over. Blob bytes are never held whole in memory. The store checks every digest;
//! this module only moves bytes.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use slicebed_image::CHUNK_BYTES;
use slicebed_proto::v1::{BlobChunk, BlobState, BlobStatusRequest};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::Code;

use super::{archive::Range, progress::Progress, ImageClient};

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Small blobs (the config).
    Memory(Vec<u8>),
    /// A range of a file (a layer inside an archive).
    File(PathBuf, Range),
}

/// A blob to make present in the store.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub source: Source,
}

/// What the store says of each blob, in order.
pub async fn status(client: &mut ImageClient, blobs: &[Blob]) -> Result<Vec<BlobState>> {
    let digests = blobs.iter().map(|b| b.digest.clone()).collect();
    let answer = client
        .blob_status(BlobStatusRequest { digests })
        .await
        .context("cannot ask the image store which layers it has")?
        .into_inner();
    if answer.blobs.len() != blobs.len() {
        bail!(
            "the image store answered for {} of {} blobs",
            answer.blobs.len(),
            blobs.len()
        );
    }
    Ok(answer.blobs)
}

/// Upload pacing: at most `limit` bytes per second (None: as fast as the link goes).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub limit: Option<u64>,
}

/// Uploads `blob` from `offset` to its end; returns the bytes sent. Retries once from the
/// store's offset when it disagrees with ours, and waits (bounded) while an earlier upload of
/// the same blob — say of a killed slicectl whose connection the store has not yet seen drop —
/// is still open.
pub async fn push(
    client: &mut ImageClient,
    blob: &Blob,
    mut offset: u64,
    pace: Pace,
    progress: &Progress,
) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut offset_retried = false;
    loop {
        match send(client, blob, offset, pace, progress).await {
            Ok(sent) => return Ok(sent),
            Err(s) if s.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(s)
                if s.code() == Code::InvalidArgument
                    && s.message().contains("offset")
                    && !offset_retried =>
            {
                offset_retried = true;
            }
            Err(s) => {
                return Err(s).with_context(|| format!("cannot upload blob {}", blob.digest));
            }
        }
        let fresh = status(client, std::slice::from_ref(blob)).await?;
        if fresh[0].present {
            return Ok(0);
        }
        offset = fresh[0].received;
    }
}

async fn send(
    client: &mut ImageClient,
    blob: &Blob,
    offset: u64,
    pace: Pace,
    progress: &Progress,
) -> Result<u64, tonic::Status> {
    let reader = open(blob, offset)
        .await
        .map_err(|e| tonic::Status::aborted(format!("cannot read the blob: {e}")))?;
    let state = Chunks {
        reader,
        digest: blob.digest.clone(),
        size: blob.size,
        offset,
        started: Instant::now(),
        first: offset,
        pace,
        progress: progress.clone_handle(),
    };
    let chunks = futures::stream::unfold(state, |mut s| async move {
        let chunk = s.next().await?;
        Some((chunk, s))
    });
    let answer = client.push_blob(chunks).await?.into_inner();
    if !answer.complete {
        return Err(tonic::Status::aborted(format!(
            "the store kept {} of {} bytes of {}",
            answer.received, blob.size, blob.digest
        )));
    }
    Ok(blob.size - offset)
}

enum Reader {
    Memory(std::io::Cursor<Vec<u8>>),
    File(tokio::io::Take<tokio::fs::File>),
}

async fn open(blob: &Blob, offset: u64) -> std::io::Result<Reader> {
    Ok(match &blob.source {
        Source::Memory(bytes) => {
            let mut c = std::io::Cursor::new(bytes.clone());
            c.set_position(offset);
            Reader::Memory(c)
        }
        Source::File(path, range) => {
            let mut f = tokio::fs::File::open(path).await?;
            f.seek(std::io::SeekFrom::Start(range.offset + offset))
                .await?;
            Reader::File(f.take(range.size - offset))
        }
    })
}

struct Chunks {
    reader: Reader,
    digest: String,
    size: u64,
    offset: u64,
    first: u64,
    started: Instant,
    pace: Pace,
    progress: Progress,
}

impl Chunks {
    /// The next chunk, or None at the end. A read error ends the stream early: the store keeps
    /// what arrived and the next push resumes there.
    async fn next(&mut self) -> Option<BlobChunk> {
        if self.offset >= self.size {
            return None;
        }
        let want = CHUNK_BYTES.min((self.size - self.offset) as usize);
        let mut data = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = match &mut self.reader {
                Reader::Memory(c) => std::io::Read::read(c, &mut data[filled..]).ok()?,
                Reader::File(f) => f.read(&mut data[filled..]).await.ok()?,
            };
            if n == 0 {
                return None;
            }
            filled += n;
        }
        if let Some(limit) = self.pace.limit {
            // Hold the average since the start of this upload at `limit` bytes per second.
            let due = Duration::from_secs_f64((self.offset - self.first) as f64 / limit as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let chunk = BlobChunk {
            digest: self.digest.clone(),
            offset: self.offset,
            data,
            size: self.size,
        };
        self.offset += want as u64;
        self.progress.add(want as u64);
        Some(chunk)
    }
}
