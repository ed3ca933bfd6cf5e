//! Site image storage quotas: the quota in force for a site (an admin's override, else the
//! service's `images.site_quota`), what the site's images hold, and the reservations of
//! uploads in progress.
//!
//! An upload reserves its **declared size** when it starts (or resumes), not its bytes so
//! far: counting only bytes received would let many parallel uploads each start within the
//! free space and together overshoot it. A reservation ends when its user commits an image
//! with the blob (the bytes then count as the site's), or when the garbage collection sweep
//! finds the upload abandoned. Checks and the reservations or commits they allow happen under
//! one lock (`BlobDir::quota_lock`), so two pushes never both take the same free space.
//! Only admins set a quota; a quota below current use is accepted and blocks new pushes.

use slicebed_image::{Digest, Reference};

use super::Core;
use crate::auth::{self, Principal};
use crate::error::{Error, Result};
use crate::model::{Millis, NewEvent, User};
use crate::store::{self, Conn};

/// What a site's images hold, and its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteImageStorage {
    /// Distinct blobs of the site's images.
    pub used: u64,
    /// Declared sizes of its users' uploads in progress.
    pub reserved: u64,
    /// In force; 0 = none.
    pub quota: u64,
    /// The site's own quota rather than the default.
    pub overridden: bool,
}

impl Core {
    /// The quota in force for `site` (0 = none), and whether it is the site's own.
    async fn quota_of(&self, c: &mut Conn, site: &str) -> Result<(u64, bool)> {
        Ok(match store::site_image_quota(c, site).await? {
            Some(q) => (q, true),
            None => (self.cfg.images.site_quota, false),
        })
    }

    /// What `site`'s images hold and its quota (everyone may read it, like the site).
    pub async fn site_image_storage(&self, p: &Principal, site: &str) -> Result<SiteImageStorage> {
        p.user()?;
        let mut c = self.db.conn().await?;
        let (quota, overridden) = self.quota_of(&mut c, site).await?;
        let (used, _) = store::site_usage(&mut c, site, &[]).await?;
        let reserved = store::site_reserved(&mut c, site, "", &[]).await?;
        Ok(SiteImageStorage {
            used,
            reserved,
            quota,
            overridden,
        })
    }

    /// Sets `site`'s image quota in bytes (0 = none), or back to the default with `None`
    /// (admins only).
    pub async fn set_site_image_quota(
        &self,
        p: &Principal,
        site: &str,
        quota: Option<u64>,
    ) -> Result<SiteImageStorage> {
        auth::require_admin(p.user()?)?;
        if quota.is_some_and(|q| q > i64::MAX as u64) {
            return Err(Error::invalid(format!(
                "image quota {} bytes is too large",
                quota.unwrap_or(0)
            )));
        }
        let mut tx = self.db.begin().await?;
        if store::get_site(&mut tx, site).await?.is_none() {
            return Err(Error::not_found("site", site));
        }
        store::set_site_image_quota(&mut tx, site, quota, &p.actor(), self.now_ms()).await?;
        let detail = match quota {
            Some(0) => "no quota".to_string(),
            Some(q) => format!("{q} bytes"),
            None => format!("the default ({} bytes)", self.cfg.images.site_quota),
        };
        let ev = NewEvent::new(
            &p.actor(),
            format!("site/{site}"),
            "site.image_quota",
            detail,
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        self.site_image_storage(p, site).await
    }

    /// Reserves `size` bytes of `u`'s site quota for their upload of `d`, or refuses it when
    /// the site's images, the other uploads in progress and this one would not fit.
    pub(super) async fn reserve_upload(&self, u: &User, d: &Digest, size: u64) -> Result<()> {
        let Some(site) = u.site.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        let _held = self.blob_dir()?.quota_lock().await;
        let mut tx = self.db.begin().await?;
        let (quota, _) = self.quota_of(&mut tx, site).await?;
        let me = [d.to_string()];
        let (used, held) = store::site_usage(&mut tx, site, &me).await?;
        // Bytes the site holds already cost nothing more.
        let need = if held.is_empty() { size } else { 0 };
        let reserved = store::site_reserved(&mut tx, site, &u.name, &me).await?;
        if quota > 0 && need > 0 && used + reserved + need > quota {
            return Err(Error::Exhausted(format!(
                "site {site}'s image storage quota is full: {used} of {quota} bytes used and {reserved} reserved by uploads in progress; blob {d} needs {need} more; delete images (slicectl image rm) or ask an admin"
            )));
        }
        store::reserve_upload(&mut tx, &u.name, d.as_str(), site, need, self.now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Refuses an image that would take `site` past its quota: the blobs it holds already
    /// count once, `u`'s own reservations of `blobs` become the image's (not counted twice),
    /// other uploads in progress count by their reservations. An image adding no bytes passes
    /// even over a lowered quota. Call under `quota_lock`.
    pub(super) async fn check_quota(
        &self,
        c: &mut Conn,
        u: &User,
        site: &str,
        blobs: &[String],
        r: &Reference,
    ) -> Result<()> {
        if site.is_empty() {
            return Ok(());
        }
        let (quota, _) = self.quota_of(c, site).await?;
        if quota == 0 {
            return Ok(());
        }
        let (used, held) = store::site_usage(c, site, blobs).await?;
        let mut extra = 0;
        for b in blobs.iter().filter(|b| !held.contains(b)) {
            extra += store::blob_size(c, b).await?.unwrap_or(0);
        }
        let reserved = store::site_reserved(c, site, &u.name, blobs).await?;
        if extra > 0 && used + reserved + extra > quota {
            return Err(Error::Exhausted(format!(
                "site {site}'s image storage quota is full: {used} of {quota} bytes used and {reserved} reserved by uploads in progress; image {r} adds {extra}; delete images (slicectl image rm) or ask an admin"
            )));
        }
        Ok(())
    }

    /// Ends reservations last renewed before `before` whose upload has neither a writer nor a
    /// partial file left (the sweep removed it, or it completed and was never committed).
    pub(super) async fn release_abandoned_reservations(&self, before: Millis) -> Result<usize> {
        let dir = self.blob_dir()?;
        let mut c = self.db.conn().await?;
        let stale = store::stale_reservations(&mut c, before).await?;
        drop(c);
        let mut released = 0;
        for (user, d) in stale {
            let Ok(digest) = Digest::parse(&d) else {
                continue;
            };
            if dir.upload_in_use(&user, &digest) {
                continue;
            }
            let mut tx = self.db.begin().await?;
            released += store::drop_stale_reservation(&mut tx, &user, &d, before).await? as usize;
            tx.commit().await?;
        }
        Ok(released)
    }
}
