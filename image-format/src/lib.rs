//! The image format that `slicectl`, `slice-service` and `node-manager` must agree on, so that
//! the digest a researcher pushed is the digest the store records and every node runs.
//!
//! - [`Digest`]: `sha256:<64 lowercase hex>`, parsed strictly, computed by [`Sha256Writer`].
//! - [`Reference`]: `name[:tag]` or `name@digest`, validated (lowercase path components).
//! - [`Manifest`] / [`Descriptor`]: the OCI image manifest; layers are *uncompressed* tars
//!   ([`LAYER_TAR`]), so a layer's digest is its diff_id ([`Manifest::check_config`]).
//! - [`docker_archive`]: the archive handed to `docker load`, written as a stream.
//! - [`base`]: the project's deterministic base image from a static busybox.
//!
//! Pure: std, serde, sha2 and tar; no I/O besides what callers hand in (and the busybox lookup
//! in [`base`]). It must never know gRPC, databases or Docker's API.

pub mod base;
mod digest;
pub mod docker_archive;
mod error;
mod manifest;
mod reference;

pub use digest::{Digest, Sha256Writer};
pub use error::{Error, Result};
pub use manifest::{
    Descriptor, ImageConfig, Manifest, RootFs, CONFIG_MEDIA_TYPE, LAYER_TAR, LAYER_TAR_GZIP,
    MANIFEST_MEDIA_TYPE, MAX_LAYERS, MAX_MANIFEST_BYTES,
};
pub use reference::{Reference, MAX_NAME_LEN, MAX_TAG_LEN};

/// Largest chunk of a blob on the wire (PushBlob, FetchBlob).
pub const CHUNK_BYTES: usize = 1 << 20;
