//! One digest's fetch, as a task of its own (so slivers needing it share it and the
//! reconciler never waits for bytes): the manifest first (bounded, parsed, checked), then the
//! config (checked against the manifest's layers) and the layers, each verified on arrival.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slicebed_image::{Digest, Manifest, MAX_MANIFEST_BYTES};

use super::{BlobSource, Images, Job, Progress};

/// How often a running fetch wakes the worker to report its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub(super) fn spawn(
    images: Images,
    source: Arc<dyn BlobSource>,
    digest: String,
    progress: Arc<Progress>,
) {
    tokio::spawn(async move {
        let ticker = {
            let images = images.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    images.inner.changed.notify_one();
                }
            })
        };
        let started = Instant::now();
        let result = fetch(&images, source.as_ref(), &digest, &progress).await;
        ticker.abort();
        match result {
            Ok(m) => {
                tracing::info!(%digest, bytes = m.blobs_size(), took_ms = started.elapsed().as_millis() as u64, "image blobs fetched and verified");
                images.finish(&digest, Job::Fetched(m));
            }
            Err(message) => {
                tracing::warn!(%digest, error = %message, "image fetch failed");
                images.finish(&digest, Job::Failed(message));
            }
        }
    });
}

async fn fetch(
    images: &Images,
    source: &dyn BlobSource,
    digest: &str,
    progress: &Progress,
) -> Result<Manifest, String> {
    let d = Digest::parse(digest).map_err(|e| e.to_string())?;
    let blobs = images.blobs();
    let what = |kind: &str| format!("image {} {kind}", short(&d));
    let path = blobs
        .fetch(
            source,
            &what("manifest"),
            d.as_str(),
            MAX_MANIFEST_BYTES as u64,
            progress,
        )
        .await
        .map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let manifest = Manifest::parse(&bytes).map_err(|e| format!("{}: {e}", what("manifest")))?;
    // The manifest counts in the total too; its bytes arrived already.
    progress.total.store(
        bytes.len() as u64 + manifest.blobs_size(),
        Ordering::Relaxed,
    );
    for b in manifest.blobs() {
        let kind = if b.digest == manifest.config.digest {
            "config"
        } else {
            "layer"
        };
        blobs
            .fetch(source, &what(kind), b.digest.as_str(), b.size, progress)
            .await
            .map_err(|e| e.to_string())?;
    }
    let config = std::fs::read(blobs.path(manifest.config.digest.as_str()))
        .map_err(|e| format!("reading the config: {e}"))?;
    manifest
        .check_config(&config)
        .map_err(|e| format!("{}: {e}", what("config")))?;
    Ok(manifest)
}

fn short(d: &Digest) -> &str {
    &d.as_str()[..19]
}
