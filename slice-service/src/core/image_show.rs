//! What `image show` adds to an image's record: the run configuration from its config blob,
//! and the live slices pinned to it.
//!
//! Slices follow GetSlice's rule (`slices::can_view`): a caller sees by name only the slices
//! they could open. The slices they cannot see are counted only for the repository's owner
//! and admins — the owner could learn them anyway (a refused delete names them) — and never
//! for anyone else, to whom even their number would tell who else runs a shared image.

use slicebed_image::{Digest, MAX_MANIFEST_BYTES};

use super::image_config::{run_config, RunConfig};
use super::slices::can_view;
use super::Core;
use crate::error::{Error, Result};
use crate::model::{Role, User};
use crate::store::{self, Conn};

/// The details of one image for one caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDetails {
    pub run: RunConfig,
    /// Live slices pinned to it that the caller may see, by name.
    pub slices: Vec<String>,
    /// The others: counted for the owner and admins, 0 for everyone else.
    pub hidden_slices: u32,
}

impl Core {
    /// The run configuration and the slices of image `name@digest` (config `config`) for `u`,
    /// who may read it (`owner` owns its repository).
    pub(super) async fn image_details(
        &self,
        c: &mut Conn,
        u: &User,
        name: &str,
        digest: &str,
        config: &str,
        owner: &str,
    ) -> Result<ImageDetails> {
        let config = Digest::parse(config).map_err(|e| Error::Internal(e.to_string()))?;
        let run = match self
            .blob_dir()?
            .read_small(&config, MAX_MANIFEST_BYTES)
            .await?
        {
            Some(bytes) => run_config(&bytes)?,
            // Its file lost (a crash between records and files): show what the record says.
            None => RunConfig::default(),
        };
        let mut out = ImageDetails {
            run,
            ..Default::default()
        };
        let mut hidden = 0u32;
        for id in store::live_slices_pinning(c, name, digest).await? {
            match store::slice_by_id(c, &id).await? {
                Some(s) if can_view(u, &s) => out.slices.push(s.name),
                Some(_) => hidden += 1,
                None => {}
            }
        }
        if u.role == Role::Admin || u.name == owner {
            out.hidden_slices = hidden;
        }
        Ok(out)
    }
}
