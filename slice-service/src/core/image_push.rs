//! Pushing images: which blobs the store lacks, chunked resumable blob uploads verified
//! against their digest, and committing a manifest under a tag — checked against the size
//! limits and the site's quota, and recorded with its event in one transaction.
//!
//! A user may reference in a manifest only blobs they uploaded themselves or that are part of
//! an image they can read: knowing a digest proves nothing, holding its bytes does.

use slicebed_image::{Digest, Manifest, Reference, MAX_MANIFEST_BYTES};

use super::images::{reader, ImageView};
use super::Core;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::images::Upload;
use crate::model::{NewEvent, User};
use crate::store::{self, Conn, ManifestRow, Repo, Visibility};

/// Most digests one BlobStatus may ask about.
pub const MAX_STATUS_DIGESTS: usize = 1024;

/// What the store holds of one blob, for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobState {
    pub digest: String,
    /// Stored and usable by the caller.
    pub present: bool,
    /// Bytes of the caller's partial upload.
    pub received: u64,
    /// Size when present.
    pub size: u64,
}

/// A blob push under way.
#[derive(Debug)]
pub enum Push {
    /// The caller may already use the blob: nothing to upload.
    Done { digest: Digest, size: u64 },
    /// Bytes to receive.
    Upload { user: String, upload: Box<Upload> },
}

fn digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::invalid(e.to_string()))
}

impl Core {
    /// Whether `u` may reference blob `d` in a manifest.
    async fn may_use_blob(&self, c: &mut Conn, u: &User, d: &str) -> Result<bool> {
        Ok(store::is_holder(c, d, &u.name).await? || store::blob_visible(c, reader(u), d).await?)
    }

    /// Which of `digests` the caller may use at once, and how much of the rest it uploaded.
    pub async fn blob_status(&self, p: &Principal, digests: &[String]) -> Result<Vec<BlobState>> {
        let u = p.user()?;
        if digests.len() > MAX_STATUS_DIGESTS {
            return Err(Error::invalid(format!(
                "{} digests asked; at most {MAX_STATUS_DIGESTS} per call",
                digests.len()
            )));
        }
        let dir = self.blob_dir()?;
        let mut out = Vec::with_capacity(digests.len());
        let mut present = Vec::new();
        let mut c = self.db.conn().await?;
        for d in digests {
            let d = digest(d)?;
            let size = store::blob_size(&mut c, d.as_str()).await?;
            let usable = match size {
                Some(_) if dir.exists(&d) => self.may_use_blob(&mut c, u, d.as_str()).await?,
                _ => false,
            };
            if usable {
                present.push(d.to_string());
            }
            out.push(BlobState {
                received: if usable { 0 } else { dir.received(&u.name, &d) },
                present: usable,
                size: if usable { size.unwrap_or(0) } else { 0 },
                digest: d.to_string(),
            });
        }
        drop(c);
        if !present.is_empty() {
            // A push is about to commit these: keep them from garbage collection a while.
            let mut tx = self.db.begin().await?;
            store::touch_blobs(&mut tx, &present, self.now_ms()).await?;
            tx.commit().await?;
        }
        Ok(out)
    }

    /// Starts (or resumes) pushing blob `digest` of `size` bytes.
    pub async fn push_begin(&self, p: &Principal, digest_s: &str, size: u64) -> Result<Push> {
        let u = p.user()?;
        let d = digest(digest_s)?;
        let max = self.cfg.images.max_blob_size;
        if size > max {
            return Err(Error::Exhausted(format!(
                "blob {d} is {size} bytes; the store takes blobs of at most {max} bytes (images.max_blob_size)"
            )));
        }
        let dir = self.blob_dir()?;
        let mut c = self.db.conn().await?;
        if let Some(stored) = store::blob_size(&mut c, d.as_str()).await? {
            if dir.exists(&d) && self.may_use_blob(&mut c, u, d.as_str()).await? {
                return Ok(Push::Done {
                    digest: d,
                    size: stored,
                });
            }
        }
        drop(c);
        // Before any byte is kept: parallel uploads must not together overshoot the quota.
        self.reserve_upload(u, &d, size).await?;
        let upload = dir.upload(&u.name, &d, size).await?;
        Ok(Push::Upload {
            user: u.name.clone(),
            upload: Box::new(upload),
        })
    }

    /// Completes a full upload: verified, moved into place, recorded with its holder.
    pub async fn push_finish(
        &self,
        p: &Principal,
        user: &str,
        upload: Box<Upload>,
        d: &Digest,
    ) -> Result<u64> {
        let size = upload.finish().await?;
        let mut tx = self.db.begin().await?;
        store::upsert_blob(&mut tx, d.as_str(), size, self.now_ms()).await?;
        store::add_holder(&mut tx, d.as_str(), user).await?;
        let ev = NewEvent::new(
            &p.actor(),
            format!("blob/{d}"),
            "image.push",
            format!("{size} bytes"),
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        Ok(size)
    }

    /// Records an image: the manifest `bytes` under `reference` (`name[:tag]`).
    pub async fn commit_image(
        &self,
        p: &Principal,
        reference: &str,
        bytes: &[u8],
    ) -> Result<ImageView> {
        let u = p.user()?;
        let r = Reference::parse_tagged(reference).map_err(|e| Error::invalid(e.to_string()))?;
        let m = Manifest::parse(bytes).map_err(|e| Error::invalid(e.to_string()))?;
        let total = m.blobs_size() + bytes.len() as u64;
        let max = self.cfg.images.max_image_size;
        if total > max {
            return Err(Error::Exhausted(format!(
                "image {r} is {total} bytes; at most {max} bytes per image (images.max_image_size)"
            )));
        }
        let dir = self.blob_dir()?;
        let mut c = self.db.conn().await?;
        for b in m.blobs() {
            let stored = store::blob_size(&mut c, b.digest.as_str()).await?;
            let usable = stored.is_some()
                && dir.exists(&b.digest)
                && self.may_use_blob(&mut c, u, b.digest.as_str()).await?;
            if !usable {
                return Err(Error::Precondition(format!(
                    "blob {} of image {r} is not in the store for you: push it first",
                    b.digest
                )));
            }
            if stored != Some(b.size) {
                return Err(Error::invalid(format!(
                    "the manifest gives blob {} a size of {}, but it is {} bytes",
                    b.digest,
                    b.size,
                    stored.unwrap_or(0)
                )));
            }
        }
        let config = dir
            .read_small(&m.config.digest, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| {
                Error::Precondition(format!(
                    "config {} vanished; push it again",
                    m.config.digest
                ))
            })?;
        m.check_config(&config)
            .map_err(|e| Error::invalid(e.to_string()))?;
        drop(c);
        let md = dir.put_small(bytes).await?;
        let mut blobs: Vec<String> = vec![md.to_string()];
        blobs.extend(m.blobs().map(|b| b.digest.to_string()));
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|b| seen.insert(b.clone()));

        let now = self.now_ms();
        let _quota = dir.quota_lock().await;
        let mut tx = self.db.begin().await?;
        let repo = match store::get_repo(&mut tx, &r.name).await? {
            Some(repo) => self
                .owned_repo(&mut tx, u, &r.name, "push into it")
                .await
                .map(|_| repo)?,
            None => {
                let repo = Repo {
                    name: r.name.clone(),
                    owner: u.name.clone(),
                    site: u.site.clone().unwrap_or_default(),
                    visibility: Visibility::Private,
                    created_at: now,
                };
                store::insert_repo(&mut tx, &repo).await?;
                repo
            }
        };
        store::upsert_blob(&mut tx, md.as_str(), bytes.len() as u64, now).await?;
        self.check_quota(&mut tx, u, &repo.site, &blobs, &r).await?;
        let row = ManifestRow {
            name: r.name.clone(),
            digest: md.to_string(),
            config_digest: m.config.digest.to_string(),
            size: total,
            layers: m
                .layers
                .iter()
                .map(|l| (l.digest.to_string(), l.size))
                .collect(),
            created_at: now,
        };
        store::insert_manifest(&mut tx, &row, &blobs).await?;
        let old = store::set_tag(&mut tx, &r.name, r.tag_or_latest(), md.as_str(), now).await?;
        store::touch_blobs(&mut tx, &blobs, 0).await?;
        // The bytes now count as the site's: the uploads' reservations end.
        store::release_reservations(&mut tx, &u.name, &blobs).await?;
        let detail = match old {
            Some(o) if o != md.as_str() => {
                format!("{}: {md} (was {o}), {total} bytes", r.tag_or_latest())
            }
            _ => format!("{}: {md}, {total} bytes", r.tag_or_latest()),
        };
        let ev = NewEvent::new(
            &p.actor(),
            format!("image/{}", r.name),
            "image.commit",
            detail,
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        self.get_image(p, &format!("{}@{md}", r.name)).await
    }
}
