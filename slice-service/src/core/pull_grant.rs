//! What a pull credential (`images/pull.rs`) opens on the read-only registry: exactly its
//! slice's pinned image — the manifest by digest, and the config and layers that manifest
//! names — while the slice is live and neither the credential nor the lease has ended. Read
//! from the database at every request, so a deleted slice's credential opens nothing.

use slicebed_image::{Digest, Manifest, Reference, MAX_MANIFEST_BYTES};

use super::Core;
use crate::error::{Error, Result};
use crate::images::pull::PullIssuer;
use crate::model::SliceLife;
use crate::store;

/// The one image a valid pull credential opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullScope {
    /// The slice's name (for logs).
    pub slice: String,
    /// Its image's repository.
    pub repository: String,
    /// Its pinned manifest.
    pub digest: Digest,
}

impl PullScope {
    fn denied(&self) -> Error {
        Error::Denied(format!(
            "this pull credential of slice {} opens only {}@{}",
            self.slice, self.repository, self.digest
        ))
    }
}

impl Core {
    /// Sets the pull credential issuer (once, when the registry is served).
    pub fn set_pull_issuer(&self, issuer: PullIssuer) {
        let _ = self.pull.set(issuer);
    }

    /// The issuer, if the registry is served.
    pub fn pull_issuer(&self) -> Option<&PullIssuer> {
        self.pull.get()
    }

    /// What the pull credential `secret` opens now, or why it opens nothing.
    pub async fn pull_scope(&self, secret: &str) -> Result<PullScope> {
        let refused = |why: &str| Error::Unauthenticated(format!("pull credential refused: {why}"));
        let issuer = self
            .pull
            .get()
            .ok_or_else(|| refused("this service issues none"))?;
        let claim = issuer
            .verify(secret)
            .ok_or_else(|| refused("not one this service issued"))?;
        let now = self.now_ms();
        if claim.expires_ms <= now {
            return Err(refused(
                "it has expired (renew the slice's lease for a new one)",
            ));
        }
        let mut c = self.db.conn().await?;
        let s = store::slice_by_id(&mut c, &claim.slice_id)
            .await?
            .filter(|s| s.life == SliceLife::Live && s.lease_expires_at > now)
            .ok_or_else(|| refused("its slice has ended"))?;
        if s.image_digest.is_empty() {
            return Err(refused("its slice runs no image of the store"));
        }
        let repository = Reference::parse(&s.image)
            .map_err(|e| Error::Internal(format!("slice {}: {e}", s.name)))?
            .name;
        let digest = Digest::parse(&s.image_digest).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(PullScope {
            slice: s.name,
            repository,
            digest,
        })
    }

    /// The pinned manifest, asked by digest (never by tag) in its own repository.
    pub async fn pull_manifest(
        &self,
        scope: &PullScope,
        name: &str,
        reference: &str,
    ) -> Result<(Digest, Vec<u8>)> {
        if name != scope.repository || reference != scope.digest.as_str() {
            return Err(scope.denied());
        }
        let bytes = self
            .blob_dir()?
            .read_small(&scope.digest, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| Error::not_found("manifest", scope.digest.to_string()))?;
        Ok((scope.digest.clone(), bytes))
    }

    /// A blob the pinned manifest names (its config or a layer).
    pub async fn pull_blob(&self, scope: &PullScope, name: &str, digest: &str) -> Result<Digest> {
        let (_, bytes) = self
            .pull_manifest(scope, name, scope.digest.as_str())
            .await?;
        let m = Manifest::parse(&bytes).map_err(|e| Error::Internal(e.to_string()))?;
        let found = m
            .blobs()
            .find(|b| b.digest.as_str() == digest)
            .map(|b| b.digest.clone());
        found.ok_or_else(|| scope.denied())
    }
}
