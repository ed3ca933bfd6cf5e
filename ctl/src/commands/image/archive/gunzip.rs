//! Gzip layers (OCI archives copied from registries usually hold them) made into the plain tars
//! the store keeps: each is decompressed as a stream into a temporary file, hashing the
//! compressed bytes (they must match the descriptor) and the tar (it must match the config's
//! diff_id) on the way, so memory stays bounded and a corrupt layer is refused before upload.
//! The temporary files live as long as the returned handles.

use std::{
    io::{self, Read},
    path::Path,
};

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use slicebed_image::Sha256Writer;

use super::{index, layout::TAR, uncompressed, ImageArchive, Range};

/// Reads through, hashing what was read.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn is_gzip(media_type: &str) -> bool {
    media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip")
}

impl ImageArchive {
    /// Replaces every gzip layer by its decompressed tar in a temporary file in `dir`; refuses
    /// other compressions. `progress` gets the compressed bytes read so far.
    pub fn decompress(
        &mut self,
        dir: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<tempfile::NamedTempFile>> {
        let mut kept = Vec::new();
        let n = self.layers.len();
        let mut done = 0;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if uncompressed(&layer.media_type) {
                continue;
            }
            if !is_gzip(&layer.media_type) {
                bail!(
                    "layer {} of {n} is {}: only plain or gzip tar layers can be pushed \
                     (skopeo copy --dest-decompress writes plain ones)",
                    i + 1,
                    layer.media_type
                );
            }
            let tmp = tempfile::Builder::new()
                .prefix("slicectl-layer-")
                .suffix(".tar")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
            let source = index::open_range(&layer.path, layer.range)?;
            let mut hashing = Hashing {
                inner: source,
                hasher: Sha256::new(),
            };
            let mut out = Sha256Writer::new(tmp.reopen()?);
            let broken = |e: io::Error| {
                anyhow::anyhow!(
                    "layer {} of {n} ({}) is not valid gzip ({e}): the archive is corrupt; \
                     nothing was pushed",
                    i + 1,
                    layer.member
                )
            };
            {
                let mut gz = flate2::read::GzDecoder::new(&mut hashing);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let k = gz.read(&mut buf).map_err(broken)?;
                    if k == 0 {
                        break;
                    }
                    io::Write::write_all(&mut out, &buf[..k])
                        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
                    progress(done + gz.get_ref().inner.limit_done(layer.range.size));
                }
            }
            // Whatever follows the gzip stream is part of the blob and of its digest.
            io::copy(&mut hashing, &mut io::sink())?;
            done += layer.range.size;
            let compressed = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
            if compressed != layer.digest {
                bail!(
                    "layer {} of {n} ({}) has digest {compressed}, not the {} the archive \
                     declares: the archive is corrupt; nothing was pushed",
                    i + 1,
                    layer.member,
                    layer.digest
                );
            }
            let size = out.written();
            let (tar_digest, _) = out.finish();
            if tar_digest.as_str() != layer.diff_id {
                bail!(
                    "layer {} of {n} ({}) decompresses to {tar_digest}, not the diff_id {} its \
                     config declares: the archive is corrupt; nothing was pushed",
                    i + 1,
                    layer.member,
                    layer.diff_id
                );
            }
            layer.digest = layer.diff_id.clone();
            layer.media_type = TAR.into();
            layer.path = tmp.path().to_path_buf();
            layer.range = Range { offset: 0, size };
            layer.size = size;
            kept.push(tmp);
        }
        Ok(kept)
    }
}

/// Bytes consumed so far of a `Take` that started at `total`.
trait Done {
    fn limit_done(&self, total: u64) -> u64;
}

impl<R> Done for io::Take<R> {
    fn limit_done(&self, total: u64) -> u64 {
        total - self.limit()
    }
}
