//! Digest pinning: a new slice's `image` (`name:tag`) is resolved in the image store, under
//! the creator's visibility, to the digest every one of its slivers runs — the first ones,
//! re-placed ones and those on nodes that fetch later alike (`api::convert::desired` sends
//! the slice's digest with each sliver). Re-pushing the tag later never changes the slice.
//! This module only decides the digest; it never reads or writes blobs.

use crate::auth::Principal;
use crate::error::{Error, Result};

use super::Core;

/// The base image every node builds for itself when the store does not hold it (a service
/// host without a static busybox): slices of it are then not pinned and run the node's own.
fn is_base(image: &str) -> bool {
    let base = slicebed_image::base::NAME;
    image == base || image == format!("{base}:{}", slicebed_image::base::TAG)
}

impl Core {
    /// The digest `image` pins a new slice of `p` to; empty for the node-built base image
    /// when the store lacks it. An image the caller cannot see is refused as invalid, naming
    /// it and how to push it (another user's private image looks exactly like a missing one).
    pub(super) async fn pin_image(&self, p: &Principal, image: &str) -> Result<String> {
        match self.resolve_image(p, image).await {
            Ok(r) => Ok(r.digest.as_str().to_string()),
            Err(Error::NotFound { .. }) if is_base(image) => Ok(String::new()),
            Err(Error::NotFound { .. }) => Err(Error::invalid(format!(
                "image \"{image}\" not found in the image store (or not visible to you): push it with `slicectl image push {image}`"
            ))),
            Err(e) => Err(e),
        }
    }
}
