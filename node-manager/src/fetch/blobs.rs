//! Blobs on the node's disk while an image is fetched: `<dir>/partial/<hex>` while it arrives
//! (so a node manager killed mid-fetch resumes from the bytes it has), `<dir>/sha256/<hex>`
//! once its sha256 is verified. Nothing unverified ever leaves this module: a blob whose
//! bytes do not hash to its digest is deleted and reported, never renamed into place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::source::BlobSource;
use super::Progress;

/// Why a blob could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The bytes are not the ones the digest names (deleted; a retry fetches them anew).
    #[error("{what} {digest} does not match its digest (got {got})")]
    Mismatch {
        /// "layer", "config" or "manifest".
        what: String,
        /// The digest asked for.
        digest: String,
        /// What the bytes hash to.
        got: String,
    },
    /// More bytes arrived than the manifest said the blob has.
    #[error("{what} {digest} is larger than the {size} bytes its manifest says")]
    TooLarge {
        /// "layer", "config" or "manifest".
        what: String,
        /// The digest asked for.
        digest: String,
        /// The size allowed.
        size: u64,
    },
    /// The store could not be reached or refused.
    #[error("fetching {what} {digest} from the image store: {message}")]
    Source {
        /// "layer", "config" or "manifest".
        what: String,
        /// The digest asked for.
        digest: String,
        /// The source's words.
        message: String,
    },
    /// The node's own disk failed.
    #[error("{action} {path}: {message}")]
    Disk {
        /// What was attempted.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The OS's words.
        message: String,
    },
}

fn disk<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlobError + 'a {
    move |e| BlobError::Disk {
        action,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The blob directory of one node manager.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

/// The 64 hex digits of `sha256:<hex>` (validated by the caller's parse).
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Blobs {
    /// Blobs under `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where a verified blob lives.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join("sha256").join(hex(digest))
    }

    /// Where a blob arrives.
    pub fn partial(&self, digest: &str) -> PathBuf {
        self.dir.join("partial").join(hex(digest))
    }

    /// Bytes already held of a blob that is still arriving (where a resume starts).
    pub fn resume_offset(&self, digest: &str) -> u64 {
        std::fs::metadata(self.partial(digest)).map_or(0, |m| m.len())
    }

    /// Deletes partial blobs untouched for `age` (a fetch abandoned long ago: its slice went
    /// away while the node manager was down) and verified blobs left by a load that never
    /// happened; returns how many. A fetch resumed within `age` keeps its bytes.
    pub fn sweep(&self, age: std::time::Duration) -> usize {
        let mut removed = 0;
        for sub in ["partial", "sha256"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|elapsed| elapsed >= age);
                if old && std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Deletes a verified blob (after its image is in the engine).
    pub fn remove(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    /// Makes sure the verified blob `digest` (at most `max` bytes) is on disk: resumes a
    /// partial one from its length, streams the rest from `source`, verifies the sha256 of the
    /// whole and only then renames it into place. Counts arriving bytes into `progress`.
    pub async fn fetch(
        &self,
        source: &dyn BlobSource,
        what: &str,
        digest: &str,
        max: u64,
        progress: &Progress,
    ) -> Result<PathBuf, BlobError> {
        let done = self.path(digest);
        if done.exists() {
            progress.add(std::fs::metadata(&done).map_or(0, |m| m.len()));
            return Ok(done);
        }
        for sub in ["sha256", "partial"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(disk("create", &d))?;
        }
        let partial = self.partial(digest);
        // What arrived before a restart is hashed again: the hash state is not kept on disk.
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        if let Ok(mut f) = std::fs::File::open(&partial) {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(disk("read", &partial))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        if have > max {
            let _ = std::fs::remove_file(&partial);
            return Err(BlobError::TooLarge {
                what: what.into(),
                digest: digest.into(),
                size: max,
            });
        }
        progress.add(have);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .map_err(disk("open", &partial))?;
        if have < max {
            let source_err = |message: String| BlobError::Source {
                what: what.into(),
                digest: digest.into(),
                message,
            };
            let mut stream = source.fetch(digest, have).await.map_err(source_err)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(source_err)?;
                if have + chunk.len() as u64 > max {
                    drop(file);
                    let _ = std::fs::remove_file(&partial);
                    return Err(BlobError::TooLarge {
                        what: what.into(),
                        digest: digest.into(),
                        size: max,
                    });
                }
                file.write_all(&chunk).map_err(disk("write", &partial))?;
                hasher.update(&chunk);
                have += chunk.len() as u64;
                progress.add(chunk.len() as u64);
            }
        }
        file.sync_all().map_err(disk("sync", &partial))?;
        drop(file);
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != digest {
            let _ = std::fs::remove_file(&partial);
            return Err(BlobError::Mismatch {
                what: what.into(),
                digest: digest.into(),
                got,
            });
        }
        std::fs::rename(&partial, &done).map_err(disk("rename", &partial))?;
        Ok(done)
    }
}
