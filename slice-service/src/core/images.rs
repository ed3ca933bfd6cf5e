//! The image store's rules: who reads which image, resolving references for slices, tags,
//! visibility, and which blobs a node may fetch. Pushing is `image_push.rs`, deleting and
//! garbage collection `image_gc.rs`.
//!
//! Visibility: admins read everything; a user reads their own repositories, site-visible ones
//! of their site, public ones, and the images of live slices they own or are members of. An
//! image a caller cannot read is NOT_FOUND to them, never "denied": its existence is not told.

use slicebed_image::{Digest, Reference};

use super::image_show::ImageDetails;
use super::Core;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::images::BlobDir;
use crate::model::{Millis, NewEvent, Role, User};
use crate::store::{self, Conn, ManifestRow, Reader, Repo, Visibility};

/// One image as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageView {
    pub name: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub owner: String,
    pub site: String,
    pub visibility: Visibility,
    pub size: u64,
    pub config_digest: String,
    pub config_size: u64,
    pub layers: Vec<(String, u64)>,
    pub created_at: Millis,
    /// Run configuration and slices: filled for one image (`get_image`), not in lists.
    pub details: Option<ImageDetails>,
}

/// A reference resolved for a caller: what a slice pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
}

pub(super) fn reader(u: &User) -> Reader<'_> {
    match u.role {
        Role::Admin => Reader::Admin,
        _ => Reader::User {
            name: &u.name,
            site: u.site.as_deref().unwrap_or(""),
        },
    }
}

pub(super) fn parse_ref(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(|e| Error::invalid(e.to_string()))
}

impl Core {
    /// The blob directory under the data directory (opened on first use).
    pub fn blob_dir(&self) -> Result<&BlobDir> {
        if let Some(d) = self.blobs.get() {
            return Ok(d);
        }
        let d = BlobDir::open(&self.cfg.data_dir)?;
        Ok(self.blobs.get_or_init(|| d))
    }

    pub(super) async fn view_of(&self, c: &mut Conn, m: ManifestRow, r: Repo) -> Result<ImageView> {
        let tags = store::tags_of(c, &m.name, &m.digest).await?;
        let config_size = store::blob_size(c, &m.config_digest).await?.unwrap_or(0);
        Ok(ImageView {
            tags,
            owner: r.owner,
            site: r.site,
            visibility: r.visibility,
            size: m.size,
            config_digest: m.config_digest,
            config_size,
            layers: m.layers,
            created_at: m.created_at,
            name: m.name,
            digest: m.digest,
            details: None,
        })
    }

    /// The manifest `reference` names, if `u` may read it (NotFound otherwise).
    pub(super) async fn find_image(
        &self,
        c: &mut Conn,
        u: &User,
        reference: &Reference,
    ) -> Result<(ManifestRow, Repo)> {
        let missing = || Error::not_found("image", reference.to_string());
        let digest = match &reference.digest {
            Some(d) => d.to_string(),
            None => store::tag_digest(c, &reference.name, reference.tag_or_latest())
                .await?
                .ok_or_else(missing)?,
        };
        store::visible_manifest(c, reader(u), &reference.name, &digest)
            .await?
            .ok_or_else(missing)
    }

    /// Images `p` may read, optionally of one repository or only their own.
    pub async fn list_images(
        &self,
        p: &Principal,
        name: &str,
        mine: bool,
    ) -> Result<Vec<ImageView>> {
        let u = p.user()?;
        let mut c = self.db.conn().await?;
        let name = (!name.is_empty()).then_some(name);
        let owner = mine.then_some(u.name.as_str());
        let rows = store::list_visible(&mut c, reader(u), name, None, owner).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (m, r) in rows {
            out.push(self.view_of(&mut c, m, r).await?);
        }
        Ok(out)
    }

    /// One image by `name:tag` or `name@digest`.
    pub async fn get_image(&self, p: &Principal, reference: &str) -> Result<ImageView> {
        let u = p.user()?;
        let r = parse_ref(reference)?;
        let mut c = self.db.conn().await?;
        let (m, repo) = self.find_image(&mut c, u, &r).await?;
        let mut v = self.view_of(&mut c, m, repo).await?;
        let details = self
            .image_details(&mut c, u, &v.name, &v.digest, &v.config_digest, &v.owner)
            .await?;
        v.details = Some(details);
        Ok(v)
    }

    /// Resolves `reference` (`name[:tag]` or `name@digest`) to the digest a slice pins, if
    /// `p` may run it.
    pub async fn resolve_image(&self, p: &Principal, reference: &str) -> Result<ResolvedImage> {
        let u = p.user()?;
        let r = parse_ref(reference)?;
        let mut c = self.db.conn().await?;
        let (m, _) = self.find_image(&mut c, u, &r).await?;
        Ok(ResolvedImage {
            digest: Digest::parse(&m.digest).map_err(|e| Error::Internal(e.to_string()))?,
            name: m.name,
            size: m.size,
        })
    }

    /// The repository `name` if `u` may change it: its owner or an admin. NotFound when `u`
    /// cannot even read it; Denied when they can but do not own it.
    pub(super) async fn owned_repo(
        &self,
        c: &mut Conn,
        u: &User,
        name: &str,
        what: &str,
    ) -> Result<Repo> {
        let repo = store::get_repo(c, name).await?;
        match repo {
            Some(r) if u.role == Role::Admin || r.owner == u.name => Ok(r),
            Some(r) => {
                if store::list_visible(c, reader(u), Some(name), None, None)
                    .await?
                    .is_empty()
                {
                    Err(Error::not_found("image", name))
                } else {
                    Err(Error::denied(format!(
                        "only the owner of repository {name} ({}) or an admin may {what}",
                        r.owner
                    )))
                }
            }
            None => Err(Error::not_found("image", name)),
        }
    }

    /// Sets who may read a repository's images; PUBLIC only by admins.
    pub async fn set_image_visibility(
        &self,
        p: &Principal,
        name: &str,
        v: Visibility,
    ) -> Result<Vec<ImageView>> {
        let u = p.user()?;
        let name = parse_ref(name)?.name;
        if v == Visibility::Public && u.role != Role::Admin {
            return Err(Error::denied(
                "only admins may make an image public (private and site are yours to set)",
            ));
        }
        let mut tx = self.db.begin().await?;
        self.owned_repo(&mut tx, u, &name, "change its visibility")
            .await?;
        store::set_visibility(&mut tx, &name, v).await?;
        let ev = NewEvent::new(
            &p.actor(),
            format!("image/{name}"),
            "image.visibility",
            v.as_str(),
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        self.list_images(p, &name, false).await
    }

    /// Points tag `target` at the image `source`.
    pub async fn tag_image(&self, p: &Principal, source: &str, target: &str) -> Result<ImageView> {
        let u = p.user()?;
        let src = parse_ref(source)?;
        let dst = slicebed_image::Reference::parse_tagged(target)
            .map_err(|e| Error::invalid(e.to_string()))?;
        let mut tx = self.db.begin().await?;
        let (m, _) = self.find_image(&mut tx, u, &src).await?;
        if dst.name != m.name {
            return Err(Error::invalid(format!(
                "tag target {dst} is in another repository than {}: push the image there instead (its layers are not sent again)",
                m.name
            )));
        }
        self.owned_repo(&mut tx, u, &dst.name, "tag its images")
            .await?;
        let now = self.now_ms();
        store::set_tag(&mut tx, &dst.name, dst.tag_or_latest(), &m.digest, now).await?;
        let ev = NewEvent::new(
            &p.actor(),
            format!("image/{}", dst.name),
            "image.tag",
            format!("{} -> {}", dst.tag_or_latest(), m.digest),
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        self.get_image(p, &format!("{}@{}", m.name, m.digest)).await
    }

    /// Whether node `node` may fetch blob `digest` (Denied, and an event, otherwise).
    pub async fn node_may_fetch(&self, node: &str, digest: &Digest) -> Result<()> {
        let mut c = self.db.conn().await?;
        if store::node_may_fetch(&mut c, node, digest.as_str()).await? {
            return Ok(());
        }
        drop(c);
        let mut tx = self.db.begin().await?;
        let ev = NewEvent::new(
            &format!("node/{node}"),
            format!("blob/{digest}"),
            "image.fetch_denied",
            "no live sliver on this node runs an image with this blob, and no public image has it",
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        Err(Error::denied(format!(
            "node {node} may not fetch {digest}: no live sliver placed on it runs an image with this blob, and no public image has it"
        )))
    }

    /// Records that a node fetched a blob (once per fetch from offset 0).
    pub async fn record_fetch(&self, node: &str, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let ev = NewEvent::new(
            &format!("node/{node}"),
            format!("blob/{digest}"),
            "image.fetch",
            format!("{size} bytes"),
        );
        store::append_event(&mut tx, &ev).await?;
        tx.commit().await?;
        Ok(())
    }
}
