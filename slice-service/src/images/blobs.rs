//! The blob directory: content-addressed files under `<data-dir>/blobs/sha256/<hex>`, and
//! uploads in progress under `<data-dir>/uploads/`.
//!
//! A blob file appears only by rename after its bytes hashed to its name, so a file under
//! `blobs/` is always complete and correct; a crash leaves at most a partial upload, which a
//! resumed push continues or the sweep removes. One upload per user and digest at a time.
//! This module never decides who may upload or read: `core/images.rs` does.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use slicebed_image::Digest;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// The blob and upload directories of one data directory.
#[derive(Debug, Clone)]
pub struct BlobDir {
    blobs: PathBuf,
    uploads: PathBuf,
    active: Arc<Mutex<HashSet<PathBuf>>>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{what} {}: {e}", path.display()))
}

impl BlobDir {
    /// Opens (creating) `<data_dir>/blobs/sha256` and `<data_dir>/uploads`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let blobs = data_dir.join("blobs").join("sha256");
        let uploads = data_dir.join("uploads");
        for d in [&blobs, &uploads] {
            std::fs::create_dir_all(d).map_err(|e| io("creating", d, e))?;
        }
        Ok(Self {
            blobs,
            uploads,
            active: Arc::default(),
        })
    }

    /// Where a complete blob lives.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// Whether the blob's file exists.
    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    fn upload_path(&self, user: &str, d: &Digest) -> PathBuf {
        // The user's name is hashed: whatever it holds, it never becomes a path component.
        let who = hex::encode(&Sha256::digest(user.as_bytes())[..8]);
        self.uploads.join(format!("{who}-{}", d.hex()))
    }

    /// Bytes of `user`'s partial upload of `d` kept on disk (0 when none).
    pub fn received(&self, user: &str, d: &Digest) -> u64 {
        std::fs::metadata(self.upload_path(user, d)).map_or(0, |m| m.len())
    }

    /// Starts or resumes `user`'s upload of `d` (of `size` bytes).
    pub async fn upload(&self, user: &str, d: &Digest, size: u64) -> Result<Upload> {
        let path = self.upload_path(user, d);
        if !self.active.lock().expect("upload set").insert(path.clone()) {
            return Err(Error::Precondition(format!(
                "another upload of {d} by this user is in progress; retry when it ends"
            )));
        }
        let guard = Active {
            set: self.active.clone(),
            path: path.clone(),
        };
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| io("opening", &path, e))?;
        let received = file
            .metadata()
            .await
            .map_err(|e| io("reading", &path, e))?
            .len();
        Ok(Upload {
            dir: self.clone(),
            digest: d.clone(),
            size,
            received,
            file,
            path,
            _guard: guard,
        })
    }

    /// Opens a complete blob for reading, with its size.
    pub async fn open_blob(&self, d: &Digest) -> Result<Option<(tokio::fs::File, u64)>> {
        let path = self.path(d);
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f
                    .metadata()
                    .await
                    .map_err(|e| io("reading", &path, e))?
                    .len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("opening", &path, e)),
        }
    }

    /// Reads a whole (small) blob: manifests and configs.
    pub async fn read_small(&self, d: &Digest, max: usize) -> Result<Option<Vec<u8>>> {
        let Some((_, len)) = self.open_blob(d).await? else {
            return Ok(None);
        };
        if len > max as u64 {
            return Err(Error::invalid(format!(
                "{d} is {len} bytes; at most {max} expected here"
            )));
        }
        let path = self.path(d);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io("reading", &path, e))?;
        Ok(Some(bytes))
    }

    /// Stores small bytes as a blob (verified by construction: named by their own digest).
    pub async fn put_small(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if !self.exists(&d) {
            let tmp = self
                .uploads
                .join(format!("put-{}-{}", d.hex(), std::process::id()));
            tokio::fs::write(&tmp, bytes)
                .await
                .map_err(|e| io("writing", &tmp, e))?;
            tokio::fs::rename(&tmp, self.path(&d))
                .await
                .map_err(|e| io("storing", &tmp, e))?;
        }
        Ok(d)
    }

    /// Removes a blob's file (absent is fine).
    pub async fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path(d);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &path, e)),
            _ => Ok(()),
        }
    }

    /// Digests of every blob file on disk.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = std::fs::read_dir(&self.blobs).map_err(|e| io("listing", &self.blobs, e))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect())
    }

    /// The age of a blob file (since last written).
    pub fn age(&self, d: &Digest) -> Option<Duration> {
        let m = std::fs::metadata(self.path(d)).ok()?.modified().ok()?;
        SystemTime::now().duration_since(m).ok()
    }

    /// Removes uploads nobody is writing that were last written more than `grace` ago;
    /// returns how many.
    pub fn sweep_uploads(&self, grace: Duration) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.uploads) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for e in rd.filter_map(|e| e.ok()) {
            let path = e.path();
            if self.active.lock().expect("upload set").contains(&path) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= grace);
            if old && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Marks an upload path busy while its `Upload` lives.
#[derive(Debug)]
struct Active {
    set: Arc<Mutex<HashSet<PathBuf>>>,
    path: PathBuf,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.set.lock().expect("upload set").remove(&self.path);
    }
}

/// One user's upload of one blob in progress.
#[derive(Debug)]
pub struct Upload {
    dir: BlobDir,
    digest: Digest,
    size: u64,
    received: u64,
    file: tokio::fs::File,
    path: PathBuf,
    _guard: Active,
}

impl Upload {
    /// Bytes held so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Appends `data` at `offset`, which must be where the upload stands.
    pub async fn append(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset != self.received {
            return Err(Error::invalid(format!(
                "chunk of {} at offset {offset}: the store holds {} bytes of it; resume from offset {}",
                self.digest, self.received, self.received
            )));
        }
        if self.received + data.len() as u64 > self.size {
            return Err(Error::invalid(format!(
                "chunk of {} ends at {}, past its declared size {}",
                self.digest,
                self.received + data.len() as u64,
                self.size
            )));
        }
        self.file
            .write_all(data)
            .await
            .map_err(|e| io("writing", &self.path, e))?;
        self.received += data.len() as u64;
        Ok(())
    }

    /// Whether every declared byte has arrived.
    pub fn is_full(&self) -> bool {
        self.received == self.size
    }

    /// Flushes what arrived (an interrupted push keeps it for the resume).
    pub async fn keep(mut self) -> Result<u64> {
        self.file
            .flush()
            .await
            .map_err(|e| io("writing", &self.path, e))?;
        Ok(self.received)
    }

    /// Verifies the complete upload against its digest and moves it into place. A mismatch
    /// discards the upload and names both digests.
    pub async fn finish(mut self) -> Result<u64> {
        self.file
            .flush()
            .await
            .map_err(|e| io("writing", &self.path, e))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| io("syncing", &self.path, e))?;
        let path = self.path.clone();
        let actual = tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
            let mut h = slicebed_image::Sha256Writer::new(std::io::sink());
            std::io::copy(&mut std::fs::File::open(&path)?, &mut h)?;
            Ok(h.finish().0)
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing an upload: {e}")))?
        .map_err(|e| io("hashing", &self.path, e))?;
        if actual != self.digest {
            let _ = tokio::fs::remove_file(&self.path).await;
            return Err(Error::invalid(format!(
                "digest mismatch: the upload was announced as {} but its {} bytes hash to {actual}; nothing was stored",
                self.digest, self.size
            )));
        }
        let target = self.dir.path(&self.digest);
        if target.exists() {
            let _ = tokio::fs::remove_file(&self.path).await;
        } else {
            tokio::fs::rename(&self.path, &target)
                .await
                .map_err(|e| io("storing", &self.path, e))?;
        }
        Ok(self.size)
    }
}
