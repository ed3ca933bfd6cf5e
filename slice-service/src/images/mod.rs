//! The image store's I/O side: the blob directory on disk (`blobs.rs`), its settings
//! (`settings.rs`), the read-only OCI Distribution listener (`registry.rs`) and the pull
//! credentials Kubernetes sites pull pinned images with (`pull.rs`).
//!
//! The rules (who may push, read, fetch; quotas; garbage collection) live in `core/images.rs`
//! and the records in `store/images.rs`; nothing here decides who may see what.

pub mod blobs;
pub mod pull;
pub mod registry;
mod registry_auth;
mod settings;

pub use blobs::{BlobDir, Upload};
pub use settings::{ImageSettings, ImagesFileConfig, RegistryFileConfig};

/// Sweeps the image store every `images.gc_interval` (first at start): unreferenced blobs,
/// files without records and stale uploads older than `images.gc_grace`.
pub fn spawn_gc(core: std::sync::Arc<crate::core::Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(core.cfg.images.gc_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match core.gc_sweep().await {
                Ok(c) if c.blobs > 0 => {
                    tracing::info!(blobs = c.blobs, bytes = c.bytes, "image store swept")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "image store sweep failed"),
            }
        }
    })
}
