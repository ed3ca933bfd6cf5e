//! Removing images and collecting their blobs, and the base image at bootstrap.
//!
//! Garbage collection never removes a blob an image references, and keeps an unreferenced one
//! that a push touched within `images.gc_grace` (it may be about to commit it); a live slice's
//! image cannot be deleted at all. Records go first, in a transaction, then files: a crash in
//! between leaves a file without a record, which the sweep removes after the grace period.

use slicebed_image::{base, Digest, Manifest};

use super::Core;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::NewEvent;
use crate::store::{self, ManifestRow, Repo, Visibility};

/// Owner of images the service itself provides.
pub const SYSTEM_OWNER: &str = "system";

/// What a delete or a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: u64,
    pub bytes: u64,
}

impl Core {
    /// Deletes a tag (`name:tag`; its manifest too when no tag and no live slice is left on
    /// it) or a manifest (`name@digest`), then collects blobs nothing references any more.
    pub async fn delete_image(&self, p: &Principal, reference: &str) -> Result<Collected> {
        let u = p.user()?;
        let r = super::images::parse_ref(reference)?;
        let mut tx = self.db.begin().await?;
        let (m, _) = self.find_image(&mut tx, u, &r).await?;
        self.owned_repo(&mut tx, u, &r.name, "delete its images")
            .await?;
        let slices = store::live_slices_using(&mut tx, &m.digest).await?;
        let mut detail = String::new();
        if r.digest.is_none() {
            let tag = r.tag_or_latest();
            store::delete_tag(&mut tx, &r.name, tag).await?;
            detail = format!("tag {tag} of {}", m.digest);
        }
        let untagged = store::tags_of(&mut tx, &m.name, &m.digest)
            .await?
            .is_empty();
        let mut freed_refs = Vec::new();
        if r.digest.is_some() && !slices.is_empty() {
            return Err(Error::Precondition(format!(
                "image {}@{} is run by live slice(s) {}: delete them first",
                m.name,
                m.digest,
                slices.join(", ")
            )));
        }
        if r.digest.is_some() || (untagged && slices.is_empty()) {
            freed_refs = store::delete_manifest(&mut tx, &m.name, &m.digest).await?;
            detail = format!("manifest {} ({} bytes)", m.digest, m.size);
        }
        let ev = NewEvent::new(
            &p.actor(),
            format!("image/{}", m.name),
            "image.delete",
            detail,
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        self.collect(&freed_refs, 0).await
    }

    /// Removes blobs among `candidates` that nothing references and no push touched since
    /// `touched_before` (records first, then files).
    async fn collect(&self, candidates: &[String], touched_before: i64) -> Result<Collected> {
        let dir = self.blob_dir()?;
        let mut out = Collected::default();
        for d in candidates {
            let mut tx = self.db.begin().await?;
            let Some(size) = store::blob_size(&mut tx, d).await? else {
                continue;
            };
            if !store::blob_collectable(&mut tx, d, touched_before.max(1)).await? {
                continue;
            }
            if store::delete_blob_if_unreferenced(&mut tx, d).await? {
                tx.commit().await?;
                if let Ok(dg) = Digest::parse(d) {
                    dir.remove(&dg).await?;
                }
                out.blobs += 1;
                out.bytes += size;
            }
        }
        Ok(out)
    }

    /// One garbage collection pass: unreferenced blobs and files, and stale uploads, older
    /// than the grace period, and the quota reservations of abandoned uploads.
    pub async fn gc_sweep(&self) -> Result<Collected> {
        let grace = self.cfg.images.gc_grace;
        let before = self.now_ms() - grace.as_millis() as i64;
        let mut c = self.db.conn().await?;
        let candidates: Vec<String> = store::collectable_blobs(&mut c, before)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        drop(c);
        let mut out = self.collect(&candidates, before).await?;
        // Files without a record: a crash between a record's delete and its file's, or
        // between a verified upload's rename and its record.
        let dir = self.blob_dir()?;
        let mut c = self.db.conn().await?;
        for d in dir.list()? {
            if store::blob_size(&mut c, d.as_str()).await?.is_none()
                && dir.age(&d).is_some_and(|a| a >= grace)
            {
                dir.remove(&d).await?;
                out.blobs += 1;
            }
        }
        drop(c);
        let uploads = dir.sweep_uploads(grace);
        // After the uploads: a reservation goes with its upload's last partial file.
        let released = self.release_abandoned_reservations(before).await?;
        if out.blobs > 0 || uploads > 0 || released > 0 {
            let mut tx = self.db.begin().await?;
            let detail = format!(
                "{} blobs ({} bytes) and {uploads} stale uploads removed, {released} upload reservations released",
                out.blobs, out.bytes
            );
            store::append_event(
                &mut tx,
                &NewEvent::new("system", "images", "image.gc", detail),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(out)
    }

    /// Puts the base image `slicebed/base:latest` in the store when it is missing, built from
    /// the host's static busybox, public and owned by the system. Without a static busybox it
    /// logs a warning and goes on.
    pub async fn ensure_base_image(&self) -> Result<Option<Digest>> {
        let mut c = self.db.conn().await?;
        if let Some(d) = store::tag_digest(&mut c, base::NAME, base::TAG).await? {
            return Ok(Digest::parse(&d).ok());
        }
        drop(c);
        let Some(img) = tokio::task::spawn_blocking(base::build_from_host)
            .await
            .map_err(|e| Error::Internal(format!("building the base image: {e}")))?
        else {
            tracing::warn!(
                "no static busybox on this host (install Debian's busybox-static): the image store starts without {}:{}",
                base::NAME,
                base::TAG
            );
            return Ok(None);
        };
        self.store_system_image(
            base::NAME,
            base::TAG,
            &img.manifest,
            &img.config,
            &[&img.layer],
        )
        .await
        .map(Some)
    }

    /// Stores an image of the system's own (public) from its blobs.
    async fn store_system_image(
        &self,
        name: &str,
        tag: &str,
        manifest: &[u8],
        config: &[u8],
        layers: &[&[u8]],
    ) -> Result<Digest> {
        let m = Manifest::parse(manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let dir = self.blob_dir()?;
        let now = self.now_ms();
        let mut blobs = Vec::new();
        for bytes in std::iter::once(manifest)
            .chain(std::iter::once(config))
            .chain(layers.iter().copied())
        {
            blobs.push((dir.put_small(bytes).await?, bytes.len() as u64));
        }
        let md = blobs[0].0.clone();
        let mut tx = self.db.begin().await?;
        for (d, size) in &blobs {
            store::upsert_blob(&mut tx, d.as_str(), *size, now).await?;
        }
        if store::get_repo(&mut tx, name).await?.is_none() {
            let repo = Repo {
                name: name.into(),
                owner: SYSTEM_OWNER.into(),
                site: String::new(),
                visibility: Visibility::Public,
                created_at: now,
            };
            store::insert_repo(&mut tx, &repo).await?;
        }
        let row = ManifestRow {
            name: name.into(),
            digest: md.to_string(),
            config_digest: m.config.digest.to_string(),
            size: blobs.iter().map(|b| b.1).sum(),
            layers: m
                .layers
                .iter()
                .map(|l| (l.digest.to_string(), l.size))
                .collect(),
            created_at: now,
        };
        let refs: Vec<String> = blobs.iter().map(|b| b.0.to_string()).collect();
        store::insert_manifest(&mut tx, &row, &refs).await?;
        store::set_tag(&mut tx, name, tag, md.as_str(), now).await?;
        store::touch_blobs(&mut tx, &refs, 0).await?;
        let ev = NewEvent::new(
            "system",
            format!("image/{name}"),
            "image.commit",
            format!("{tag}: {md} (built at bootstrap)"),
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        tracing::info!(image = %format!("{name}:{tag}"), digest = %md, "base image stored");
        Ok(md)
    }
}
