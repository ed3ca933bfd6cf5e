//! The OCI image manifest and config as the store uses them.
//!
//! Decision: layers are **uncompressed** tars (`application/vnd.oci.image.layer.v1.tar`), so a
//! layer's digest equals its diff_id (the config's `rootfs.diff_ids`), the exact bytes
//! `docker save` writes and `docker load` reads. No compression step can make the digest a
//! node verifies differ from the one the researcher pushed. Gzip layers are refused with a
//! message saying to push them uncompressed (slicectl decompresses).

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Media type of the manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a layer: an uncompressed tar.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip layers: recognised only to be refused with a clear message.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Most layers in one image.
pub const MAX_LAYERS: usize = 128;
/// Largest manifest (and config) document.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A blob reference inside a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The config's root file system: the diff_ids of the layers, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The parts of an OCI image config the store checks and the base image sets; everything
/// else in a pushed config is kept verbatim (the blob's bytes are what is served).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: serde_json::Value,
    pub rootfs: RootFs,
}

impl Manifest {
    /// The manifest of a config and layers (uncompressed tars), as stored.
    pub fn new(config: (Digest, u64), layers: &[(Digest, u64)]) -> Self {
        Self {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.into(),
            config: Descriptor {
                media_type: CONFIG_MEDIA_TYPE.into(),
                digest: config.0,
                size: config.1,
            },
            layers: layers
                .iter()
                .map(|(d, s)| Descriptor {
                    media_type: LAYER_TAR.into(),
                    digest: d.clone(),
                    size: *s,
                })
                .collect(),
        }
    }

    /// The canonical JSON bytes (their digest is the image digest).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Parses and validates manifest bytes: schema 2, OCI media types, uncompressed layers,
    /// at most [`MAX_LAYERS`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::Manifest(format!(
                "manifest is {} bytes; at most {MAX_MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::Manifest(format!("manifest is not a valid OCI image manifest: {e}"))
        })?;
        if m.schema_version != 2 || m.media_type != MANIFEST_MEDIA_TYPE {
            return Err(Error::Manifest(format!(
                "manifest must have schemaVersion 2 and mediaType {MANIFEST_MEDIA_TYPE}"
            )));
        }
        if m.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(Error::Manifest(format!(
                "config mediaType {:?}: must be {CONFIG_MEDIA_TYPE}",
                m.config.media_type
            )));
        }
        if m.layers.is_empty() || m.layers.len() > MAX_LAYERS {
            return Err(Error::Manifest(format!(
                "manifest has {} layers; 1 to {MAX_LAYERS} allowed",
                m.layers.len()
            )));
        }
        for l in &m.layers {
            if l.media_type == LAYER_TAR_GZIP {
                return Err(Error::Manifest(format!(
                    "layer {} is gzip-compressed; the store keeps uncompressed tars ({LAYER_TAR}) so a layer's digest is its diff_id: push it uncompressed",
                    l.digest
                )));
            }
            if l.media_type != LAYER_TAR {
                return Err(Error::Manifest(format!(
                    "layer {} mediaType {:?}: must be {LAYER_TAR}",
                    l.digest, l.media_type
                )));
            }
        }
        Ok(m)
    }

    /// Every blob the image needs: config first, then the layers in order.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Config plus layers, in bytes.
    pub fn blobs_size(&self) -> u64 {
        self.blobs().map(|d| d.size).sum()
    }

    /// Checks the config bytes: a JSON config whose `rootfs.diff_ids` are exactly the layer
    /// digests in order (true of uncompressed layers).
    pub fn check_config(&self, config: &[u8]) -> Result<ImageConfig> {
        self.config.digest.verify(config)?;
        let c: ImageConfig = serde_json::from_slice(config).map_err(|e| {
            Error::Manifest(format!(
                "config {} is not an OCI image config: {e}",
                self.config.digest
            ))
        })?;
        let layers: Vec<&Digest> = self.layers.iter().map(|l| &l.digest).collect();
        let diff_ids: Vec<&Digest> = c.rootfs.diff_ids.iter().collect();
        if layers != diff_ids {
            return Err(Error::Manifest(format!(
                "config rootfs.diff_ids ({} entries) do not match the manifest's {} layers in order",
                diff_ids.len(),
                layers.len()
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Manifest, Vec<u8>) {
        let l1 = Digest::of(b"layer1");
        let l2 = Digest::of(b"layer2");
        let config = serde_json::to_vec(&ImageConfig {
            created: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            config: serde_json::json!({"Cmd": ["/bin/sh"]}),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![l1.clone(), l2.clone()],
            },
        })
        .unwrap();
        let m = Manifest::new(
            (Digest::of(&config), config.len() as u64),
            &[(l1, 6), (l2, 6)],
        );
        (m, config)
    }

    #[test]
    fn round_trip_and_config_check() {
        let (m, config) = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert_eq!(m.blobs().count(), 3);
        assert_eq!(m.blobs_size(), config.len() as u64 + 12);
        m.check_config(&config).unwrap();
        let mut wrong = m.clone();
        wrong.layers.reverse();
        assert!(wrong
            .check_config(&config)
            .unwrap_err()
            .to_string()
            .contains("diff_ids"));
        assert!(matches!(m.check_config(b"{}"), Err(Error::Mismatch { .. })));
    }

    #[test]
    fn refusals_name_the_problem() {
        let (m, _) = sample();
        let mut gz = m.clone();
        gz.layers[0].media_type = LAYER_TAR_GZIP.into();
        assert!(Manifest::parse(&gz.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("uncompressed"));
        let mut none = m.clone();
        none.layers.clear();
        assert!(Manifest::parse(&none.to_bytes()).is_err());
        let mut v1 = m.clone();
        v1.schema_version = 1;
        assert!(Manifest::parse(&v1.to_bytes()).is_err());
        assert!(Manifest::parse(b"not json")
            .unwrap_err()
            .to_string()
            .contains("OCI"));
        let bad_digest = String::from_utf8(m.to_bytes())
            .unwrap()
            .replace("sha256:", "md5:");
        assert!(Manifest::parse(bad_digest.as_bytes()).is_err());
    }
}
