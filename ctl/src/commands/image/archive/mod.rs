//! An image read from an archive on disk — `docker save` output or an OCI image layout — with
//! bounded memory whatever its size: a first pass indexes the tar members ([`index`]), the
//! layout names the config and layers ([`layout`]), and [`ImageArchive::verify`] hashes each
//! layer by streaming it from the file. Layers are never loaded whole; only the config (JSON,
//! kilobytes) is kept in memory. Nothing here talks to the network or to Docker.

pub mod gunzip;
pub mod index;
pub mod layout;

use std::{io::Read, path::Path};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use index::Range;

/// One layer, as it will be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:…` of the bytes as stored (and uploaded).
    pub digest: String,
    pub size: u64,
    /// `sha256:…` of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: String,
    pub media_type: String,
    /// The file holding the bytes: the archive, or a decompressed copy ([`gunzip`]).
    pub path: std::path::PathBuf,
    /// Where the bytes are in that file.
    pub range: Range,
    /// Member name, for messages.
    pub member: String,
}

/// An image found in an archive. Its config digest is checked on opening; its layers only by
/// [`ImageArchive::verify`].
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub path: std::path::PathBuf,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<Layer>,
    pub repo_tags: Vec<String>,
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `rootfs.diff_ids` of an image config.
pub fn diff_ids(config: &Value) -> Result<Vec<String>> {
    let ids = config["rootfs"]["diff_ids"]
        .as_array()
        .context("the image config has no rootfs.diff_ids")?;
    ids.iter()
        .map(|d| {
            d.as_str()
                .map(String::from)
                .context("a diff_id in the image config is not a string")
        })
        .collect()
}

/// Whether layers of this media type are plain tars (what the store keeps).
pub fn uncompressed(media_type: &str) -> bool {
    media_type == layout::TAR || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

impl ImageArchive {
    /// Indexes the archive at `path` and finds the image `wanted` (NAME:TAG) or its only one.
    pub fn open(path: &Path, wanted: Option<&str>) -> Result<ImageArchive> {
        let idx = index::Index::build(path)?;
        let declared = layout::resolve(&idx, wanted)?;
        let config = idx.read_small(&declared.config_member)?;
        let config_digest = sha256(&config);
        if let Some(expected) = &declared.config_digest {
            if *expected != config_digest {
                bail!(
                    "the image config {} in {} has digest {config_digest}, not the {expected} \
                     the archive declares: the archive is corrupt; nothing was pushed",
                    declared.config_member,
                    path.display()
                );
            }
        }
        let parsed: Value = serde_json::from_slice(&config)
            .with_context(|| format!("{} is not valid JSON", declared.config_member))?;
        let ids = diff_ids(&parsed)?;
        if ids.len() != declared.layers.len() {
            bail!(
                "the image has {} layers but its config lists {} diff_ids",
                declared.layers.len(),
                ids.len()
            );
        }
        let layers = declared
            .layers
            .into_iter()
            .zip(ids)
            .map(|(l, diff_id)| Layer {
                size: l.range.size,
                digest: l.digest,
                diff_id,
                media_type: l.media_type,
                path: path.to_path_buf(),
                range: l.range,
                member: l.member,
            })
            .collect();
        Ok(ImageArchive {
            path: path.to_path_buf(),
            config,
            config_digest,
            layers,
            repo_tags: declared.repo_tags,
        })
    }

    /// Bytes of all layers.
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Hashes every layer from the file (1 MiB at a time) and refuses the archive if one does
    /// not match its declared digest, or an uncompressed one its diff_id. `progress` gets the
    /// bytes hashed so far.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let mut done = 0u64;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut reader = index::open_range(&layer.path, layer.range)
                .with_context(|| format!("cannot read {}", layer.path.display()))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut read = 0u64;
            loop {
                let k = reader
                    .read(&mut buf)
                    .with_context(|| format!("cannot read {}", layer.path.display()))?;
                if k == 0 {
                    break;
                }
                hasher.update(&buf[..k]);
                read += k as u64;
                done += k as u64;
                progress(done);
            }
            if read != layer.size {
                bail!(
                    "layer {} of {n} ({}) is cut short: {read} of {} bytes",
                    i + 1,
                    layer.member,
                    layer.size
                );
            }
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            let declared = if uncompressed(&layer.media_type) && layer.diff_id != layer.digest {
                &layer.diff_id
            } else {
                &layer.digest
            };
            if actual != layer.digest || actual != *declared {
                bail!(
                    "layer {} of {n} ({}) has digest {actual}, not the {declared} the archive \
                     declares: the archive is corrupt; nothing was pushed",
                    i + 1,
                    layer.member
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
