//! `NodeService.FetchBlob`: a node streams a blob of the image store over its own mutual-TLS
//! connection (no registry, no inbound port). Authorization is the core's
//! (`Core::node_may_fetch`); this only reads the file in chunks and never holds it whole.

use std::pin::Pin;

use futures::Stream;
use slicebed_image::{Digest, CHUNK_BYTES};
use slicebed_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::Error;

/// The stream FetchBlob answers with.
pub type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;

/// Serves one FetchBlob call.
pub async fn fetch_blob(
    api: &Api,
    req: Request<pb::FetchBlobRequest>,
) -> Result<Response<FetchStream>, Status> {
    let (meta, ext, r) = req.into_parts();
    let node = super::peer::peer_node(&api.core, &meta, &ext).await?;
    let d = Digest::parse(&r.digest).map_err(|e| Error::invalid(e.to_string()))?;
    api.core.node_may_fetch(&node, &d).await?;
    let Some((mut file, size)) = api.core.blob_dir()?.open_blob(&d).await? else {
        return Err(Error::not_found("blob", d.to_string()).into());
    };
    if r.offset > size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end of {d} ({size} bytes)",
            r.offset
        )));
    }
    if r.offset == 0 {
        api.core.record_fetch(&node, &d, size).await?;
    }
    file.seek(std::io::SeekFrom::Start(r.offset))
        .await
        .map_err(|e| Error::Internal(format!("seeking in {d}: {e}")))?;
    let (tx, rx) = mpsc::channel(4);
    let digest = d.to_string();
    let mut offset = r.offset;
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(blob = %digest, error = %e, "reading a blob for a node");
                    let _ = tx
                        .send(Err(Status::internal(
                            "reading the blob failed (see the service log)",
                        )))
                        .await;
                    break;
                }
            };
            let chunk = pb::BlobChunk {
                digest: digest.clone(),
                offset,
                data: buf[..n].to_vec(),
                size,
            };
            offset += n as u64;
            if tx.send(Ok(chunk)).await.is_err() {
                break; // the node went away
            }
        }
    });
    Ok(Response::new(
        Box::pin(ReceiverStream::new(rx)) as FetchStream
    ))
}
