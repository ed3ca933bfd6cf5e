//! Handing verified blobs to the engine: a `docker save` archive written on a blocking
//! thread (the archive writer hashes every layer again as it copies it, so a blob changed on
//! disk after its check aborts the load) and streamed to [`Runtime::load_image`].

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::Blobs;
use crate::runtime::{Runtime, RuntimeError};
use slicebed_image::docker_archive::{self, Layer};
use slicebed_image::Manifest;

/// A `Write` that sends its bytes as chunks down a channel.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the engine stopped reading the archive"))
    }
}

/// Loads the image of `manifest` (every blob verified in `blobs`) tagged `reference`.
pub(super) async fn load<R: Runtime>(
    rt: &R,
    blobs: &Blobs,
    manifest: &Manifest,
    reference: &str,
) -> Result<(), RuntimeError> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let blobs = blobs.clone();
    let manifest = manifest.clone();
    let tags = vec![reference.to_string()];
    let writer = tokio::task::spawn_blocking(move || {
        let write = || -> Result<(), String> {
            let config = std::fs::read(blobs.path(manifest.config.digest.as_str()))
                .map_err(|e| format!("reading the config: {e}"))?;
            let mut layers = Vec::new();
            for l in &manifest.layers {
                let path = blobs.path(l.digest.as_str());
                let f = std::fs::File::open(&path)
                    .map_err(|e| format!("reading layer {}: {e}", l.digest))?;
                layers.push(Layer {
                    digest: l.digest.clone(),
                    size: l.size,
                    reader: std::io::BufReader::new(f),
                });
            }
            let out = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::new(),
            };
            let mut out =
                docker_archive::write(out, &config, layers, &tags).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())
        };
        if let Err(e) = write() {
            // The stream ends with the error: the engine's load is aborted, nothing tagged.
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
    let loaded = rt.load_image(reference, stream).await;
    let _ = writer.await;
    loaded
}
