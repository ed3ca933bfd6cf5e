//! What the read-only OCI Distribution API (`images/registry.rs`) may serve to whom: the
//! same visibility as the gRPC API, with anonymous callers reading public images only.

use slicebed_image::{Digest, Reference, MAX_MANIFEST_BYTES};

use super::images::reader;
use super::Core;
use crate::auth::{self, Principal};
use crate::error::{Error, Result};
use crate::model::User;
use crate::store::{self, Reader};

/// Who reads anonymously: matches no owner, site or slice, so only public images.
const ANONYMOUS: Reader<'static> = Reader::User { name: "", site: "" };

impl Core {
    /// The user behind a registry credential (a user token, as a bearer token or as the
    /// password of basic authentication); `None` for anonymous calls.
    pub async fn registry_user(&self, secret: Option<&str>) -> Result<Option<User>> {
        let Some(secret) = secret else {
            return Ok(None);
        };
        let mut c = self.db.conn().await?;
        match auth::authenticate(&mut c, secret).await? {
            Principal::User(u) => Ok(Some(u)),
            _ => Err(Error::Unauthenticated(
                "the registry takes user tokens only".into(),
            )),
        }
    }

    /// A manifest's digest and bytes by tag or digest, if `who` may read it.
    pub async fn registry_manifest(
        &self,
        who: Option<&User>,
        name: &str,
        reference: &str,
    ) -> Result<(Digest, Vec<u8>)> {
        let r = if reference.starts_with("sha256:") {
            Reference::parse(&format!("{name}@{reference}"))
        } else {
            Reference::parse(&format!("{name}:{reference}"))
        }
        .map_err(|e| Error::invalid(e.to_string()))?;
        let mut c = self.db.conn().await?;
        let digest = match &r.digest {
            Some(d) => d.to_string(),
            None => store::tag_digest(&mut c, &r.name, r.tag_or_latest())
                .await?
                .ok_or_else(|| Error::not_found("manifest", r.to_string()))?,
        };
        let rd = who.map_or(ANONYMOUS, reader);
        store::visible_manifest(&mut c, rd, &r.name, &digest)
            .await?
            .ok_or_else(|| Error::not_found("manifest", r.to_string()))?;
        let d = Digest::parse(&digest).map_err(|e| Error::Internal(e.to_string()))?;
        let bytes = self
            .blob_dir()?
            .read_small(&d, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!("manifest {d} is recorded but its file is missing"))
            })?;
        Ok((d, bytes))
    }

    /// Whether `who` may read blob `digest` of repository `name`.
    pub async fn registry_blob(
        &self,
        who: Option<&User>,
        name: &str,
        digest: &str,
    ) -> Result<Digest> {
        let d = Digest::parse(digest).map_err(|e| Error::invalid(e.to_string()))?;
        let mut c = self.db.conn().await?;
        let rd = who.map_or(ANONYMOUS, reader);
        if store::repo_blob_visible(&mut c, rd, name, d.as_str()).await? {
            Ok(d)
        } else {
            Err(Error::not_found("blob", format!("{name}@{d}")))
        }
    }
}
