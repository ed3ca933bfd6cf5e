//! The blob directory: content-addressed files under `<data-dir>/blobs/sha256/<hex>`, and
//! uploads in progress under `<data-dir>/uploads/`.
//!
//! A blob file appears only by rename after its bytes hashed to its name, so a file under
//! `blobs/` is always complete and correct; a crash leaves at most a partial upload, which a
//! resumed push continues or the sweep removes. One writer per user and digest at a time: a
//! resume takes over from an upload whose client vanished without the connection being seen to
//! close yet (a cut network), and the older stream is refused from its next chunk on.
//! This module never decides who may upload or read: `core/images.rs` does.

use std::collections::HashMap;
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
    /// Per upload file, the generation of its current writer; a resume bumps it.
    active: Arc<Mutex<HashMap<PathBuf, Slot>>>,
    /// Serialises quota checks with the reservations and commits they allow, so two pushes
    /// cannot both fit in the same free space (`core/image_quota.rs`). In-process: one
    /// service writes one store.
    quota: Arc<tokio::sync::Mutex<()>>,
}

/// The generation of an upload file's current writer, locked around every write.
type Slot = Arc<tokio::sync::Mutex<u64>>;

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
            quota: Arc::default(),
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

    /// Held while a quota is checked and the space it allows is reserved or committed.
    pub async fn quota_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.quota.lock().await
    }

    /// Whether `user`'s upload of `d` has a writer or a partial file: its quota reservation
    /// must stay.
    pub fn upload_in_use(&self, user: &str, d: &Digest) -> bool {
        let path = self.upload_path(user, d);
        self.active.lock().expect("upload set").contains_key(&path) || path.exists()
    }

    /// Bytes of `user`'s partial upload of `d` kept on disk (0 when none).
    pub fn received(&self, user: &str, d: &Digest) -> u64 {
        std::fs::metadata(self.upload_path(user, d)).map_or(0, |m| m.len())
    }

    /// Starts or resumes `user`'s upload of `d` (of `size` bytes).
    pub async fn upload(&self, user: &str, d: &Digest, size: u64) -> Result<Upload> {
        let path = self.upload_path(user, d);
        let slot = self
            .active
            .lock()
            .expect("upload set")
            .entry(path.clone())
            .or_default()
            .clone();
        // Taking the slot's lock waits out a write in progress; from then on the older
        // writer's generation is stale and its next chunk is refused.
        let mut current = slot.lock().await;
        *current += 1;
        let generation = *current;
        let guard = Active {
            set: self.active.clone(),
            path: path.clone(),
            slot: slot.clone(),
            generation,
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
        drop(current);
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
            if self.active.lock().expect("upload set").contains_key(&path) {
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

/// Marks an upload path busy while its `Upload` lives, and holds the writer's generation.
#[derive(Debug)]
struct Active {
    set: Arc<Mutex<HashMap<PathBuf, Slot>>>,
    path: PathBuf,
    slot: Slot,
    generation: u64,
}

impl Active {
    /// Locks the slot for one write, or refuses a writer a resume has taken over from.
    async fn write_lock(&self, d: &Digest) -> Result<tokio::sync::MutexGuard<'_, u64>> {
        let g = self.slot.lock().await;
        if *g != self.generation {
            return Err(Error::Precondition(format!(
                "this upload of {d} was taken over by a newer one (a resumed push); this stream ends"
            )));
        }
        Ok(g)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut set = self.set.lock().expect("upload set");
        // The last holder besides the map: no writer is left (new ones go through the map).
        if Arc::strong_count(&self.slot) == 2 {
            set.remove(&self.path);
        }
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
        let _writing = self._guard.write_lock(&self.digest).await?;
        // Written through before the lock is let go, so a resume sees the file's true length.
        self.file
            .write_all(data)
            .await
            .map_err(|e| io("writing", &self.path, e))?;
        self.file
            .flush()
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
        // No resume may take over while the bytes are checked and moved.
        let slot = self._guard.slot.clone();
        let current = slot.lock().await;
        if *current != self._guard.generation {
            return Err(Error::Precondition(format!(
                "this upload of {} was taken over by a newer one (a resumed push)",
                self.digest
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resume_takes_over_from_a_vanished_writer_and_only_verified_bytes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let data = b"hello, store";
        let d = Digest::of(data);
        let mut old = blobs.upload("alice", &d, data.len() as u64).await.unwrap();
        old.append(0, &data[..5]).await.unwrap();
        // The client vanished; its stream is still open when the resume arrives.
        let mut new = blobs.upload("alice", &d, data.len() as u64).await.unwrap();
        assert_eq!(new.received(), 5);
        let e = old.append(5, &data[5..]).await.unwrap_err();
        assert!(e.to_string().contains("taken over"), "{e}");
        drop(old);
        new.append(5, &data[5..]).await.unwrap();
        assert!(new.is_full());
        new.finish().await.unwrap();
        assert_eq!(std::fs::read(blobs.path(&d)).unwrap(), data);
        assert_eq!(
            blobs.received("alice", &d),
            0,
            "the upload moved into place"
        );
        // Wrong bytes under a digest are discarded whole.
        let d2 = Digest::of(b"other");
        let mut u = blobs.upload("alice", &d2, 5).await.unwrap();
        u.append(0, b"OTHER").await.unwrap();
        assert!(u
            .finish()
            .await
            .unwrap_err()
            .to_string()
            .contains("digest mismatch"));
        assert!(!blobs.exists(&d2));
        assert_eq!(blobs.received("alice", &d2), 0);
    }
}
