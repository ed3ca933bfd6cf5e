//! Images fetched on demand from the slice service's image store, over connections the node
//! opens (no registry, no inbound port). A sliver whose slice pinned a digest runs exactly
//! that image: when the engine lacks it, one fetch per digest (shared by every sliver that
//! needs it) streams the manifest, config and layers to disk ([`blobs`]), verifying each
//! sha256 before it is kept; the verified blobs are then handed to the engine as a
//! `docker save` archive ([`load`]) tagged [`local_ref`]. Loaded images form a cache with a
//! disk budget ([`cache`]), evicted least recently used first.
//!
//! It must never hand the engine a byte that was not verified, never fetch from anywhere but
//! the store, and never remove an image a desired sliver needs.

pub mod blobs;
pub mod cache;
mod job;
mod load;
pub mod source;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::runtime::Runtime;
pub use blobs::{BlobError, Blobs};
pub use cache::Cache;
pub use source::{BlobSource, GrpcSource};

/// Default disk budget of the image cache.
pub const DEFAULT_BUDGET: u64 = 10 << 30;

/// Blobs of a fetch untouched this long are removed when the node manager starts: a resume
/// after a restart within it continues; older ones belong to slivers long gone.
pub const STALE_BLOBS: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The engine tag of a store image: its manifest digest, so one tag is one content.
pub fn local_ref(digest: &str) -> String {
    format!(
        "slicebed/store:{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

/// Bytes arrived of a fetch, and the total expected (0 until the manifest is read).
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Counts `n` more bytes.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// Where one digest's fetch stands.
#[derive(Debug)]
enum Job {
    Running(Arc<Progress>),
    /// Every blob verified on disk; the manifest's bytes and its blobs' total.
    Fetched(slicebed_image::Manifest),
    Failed(String),
}

/// What the reconciler may do with a pinned sliver now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// The image is in the engine under this reference.
    Yes(String),
    /// Still arriving: the message for the sliver's `creating` report.
    Pulling(String),
    /// It cannot be had: the message for the sliver's `failed` report.
    Failed(String),
}

/// The node's image fetcher and cache (cheap to clone; one per node manager).
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: Blobs,
    budget: u64,
    source: Mutex<Option<Arc<dyn BlobSource>>>,
    jobs: Mutex<HashMap<String, Job>>,
    cache: Mutex<Cache>,
    changed: Notify,
    metrics: Mutex<Option<crate::metrics::NodeMetrics>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}

impl Images {
    /// A fetcher keeping its blobs and cache index under `dir`, with a disk `budget`.
    pub fn new(dir: PathBuf, budget: u64) -> Self {
        let cache = Cache::open(dir.join("cache.json"));
        let swept = Blobs::new(dir.clone()).sweep(STALE_BLOBS);
        if swept > 0 {
            tracing::info!(
                files = swept,
                "removed blobs of fetches abandoned over a day ago"
            );
        }
        Self {
            inner: Arc::new(Inner {
                blobs: Blobs::new(dir),
                budget,
                source: Mutex::new(None),
                jobs: Mutex::new(HashMap::new()),
                cache: Mutex::new(cache),
                changed: Notify::new(),
                metrics: Mutex::new(None),
            }),
        }
    }

    /// Fetches from `source` from now on (the session's connection); `None` while cut off.
    pub fn set_source(&self, source: Option<Arc<dyn BlobSource>>) {
        *lock(&self.inner.source) = source;
        self.inner.changed.notify_one();
    }

    /// Counts fetches in `metrics`.
    pub fn set_metrics(&self, metrics: Option<crate::metrics::NodeMetrics>) {
        *lock(&self.inner.metrics) = metrics;
    }

    /// Resolves when a fetch made progress or ended (the worker then runs a pass).
    pub async fn changed(&self) {
        self.inner.changed.notified().await
    }

    /// The blob directory.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// Whether the image pinned to `digest` can be used now; starts (or joins) its fetch if
    /// not, and loads it into the engine once every blob is verified. `image` is the name
    /// the researcher gave, for messages.
    pub async fn prepare<R: Runtime>(
        &self,
        rt: &R,
        image: &str,
        digest: &str,
        now_ms: u64,
    ) -> Result<Ready, crate::runtime::RuntimeError> {
        let reference = local_ref(digest);
        if rt.image_id(&reference).await?.is_some() {
            lock(&self.inner.cache).touch(digest, now_ms);
            return Ok(Ready::Yes(reference));
        }
        let state = {
            let mut jobs = lock(&self.inner.jobs);
            match jobs.remove(digest) {
                Some(Job::Running(p)) => {
                    jobs.insert(digest.to_string(), Job::Running(p.clone()));
                    return Ok(Ready::Pulling(pulling(image, digest, &p)));
                }
                Some(Job::Failed(m)) => {
                    self.count(false);
                    return Ok(Ready::Failed(m));
                }
                Some(Job::Fetched(m)) => Some(m),
                None => {
                    let Some(source) = lock(&self.inner.source).clone() else {
                        return Ok(Ready::Pulling(format!(
                            "waiting for the connection to the service to fetch image {image} ({})",
                            short(digest)
                        )));
                    };
                    let p = Arc::new(Progress::default());
                    jobs.insert(digest.to_string(), Job::Running(p.clone()));
                    job::spawn(self.clone(), source, digest.to_string(), p.clone());
                    return Ok(Ready::Pulling(pulling(image, digest, &p)));
                }
            }
        };
        let manifest = state.expect("only a fetched job gets here");
        match load::load(rt, &self.inner.blobs, &manifest, &reference).await {
            Ok(()) => {
                self.count(true);
                tracing::info!(%image, %digest, bytes = manifest.blobs_size(), "image fetched, verified and loaded");
                lock(&self.inner.cache).record(digest, manifest.blobs_size(), now_ms);
                for b in manifest.blobs() {
                    self.inner.blobs.remove(b.digest.as_str());
                }
                self.inner.blobs.remove(digest);
                Ok(Ready::Yes(reference))
            }
            Err(e) if e.is_unavailable() => {
                // Nothing is known: keep the verified blobs and try again.
                lock(&self.inner.jobs).insert(digest.to_string(), Job::Fetched(manifest));
                Err(e)
            }
            Err(e) => {
                self.count(false);
                Ok(Ready::Failed(format!("image {image} ({digest}): {e}")))
            }
        }
    }

    /// Removes cached images, least recently used first, until the cache fits its budget;
    /// never one in `in_use` (the digests desired slivers pin). An image the engine refuses
    /// to remove (a container, maybe another node manager's on a shared engine, uses it)
    /// stays.
    pub async fn evict<R: Runtime>(&self, rt: &R, in_use: &BTreeSet<String>) {
        let victims = lock(&self.inner.cache).victims(self.inner.budget, in_use);
        for digest in victims {
            let reference = local_ref(&digest);
            match rt.remove_image(&reference).await {
                Ok(()) => {
                    tracing::info!(%digest, "image evicted from the node's cache");
                    lock(&self.inner.cache).forget(&digest);
                }
                Err(e) => tracing::info!(%digest, error = %e, "cached image kept"),
            }
        }
    }

    /// Whether the cache holds more than its budget.
    pub fn over_budget(&self) -> bool {
        lock(&self.inner.cache).total() > self.inner.budget
    }

    /// A job ended (or moved): record it and wake the worker.
    fn finish(&self, digest: &str, job: Job) {
        lock(&self.inner.jobs).insert(digest.to_string(), job);
        self.inner.changed.notify_one();
    }

    fn count(&self, ok: bool) {
        if let Some(m) = lock(&self.inner.metrics).as_ref() {
            m.image_fetch(ok);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn pulling(image: &str, digest: &str, p: &Progress) -> String {
    let (done, total) = p.get();
    if total == 0 {
        return format!("pulling image {image} ({})", short(digest));
    }
    // Coarse figures (whole MiB), so progress reports are few.
    let mib = |b: u64| b >> 20;
    format!(
        "pulling image {image} ({}): {} MiB of {} MiB",
        short(digest),
        mib(done.min(total)),
        mib(total).max(1)
    )
}

#[cfg(test)]
mod tests;
