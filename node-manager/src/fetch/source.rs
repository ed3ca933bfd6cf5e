//! Where blobs come from: the image store, over the node's own mTLS connection
//! (`NodeService.FetchBlob`). Nothing here trusts what it receives: [`super::blobs`] verifies
//! every byte against its digest before anything else sees it.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use slicebed_proto::v1 as pb;

use crate::connect::NodeClient;

/// A source of blobs by digest, from a byte offset (to resume a partial download).
pub trait BlobSource: Send + Sync + 'static {
    /// The blob's bytes from `offset` on; an error names what went wrong in words.
    fn fetch(
        &self,
        digest: &str,
        offset: u64,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Result<Bytes, String>>, String>>;
}

/// The image store behind the node's control connection.
pub struct GrpcSource {
    client: NodeClient,
}

impl GrpcSource {
    /// Fetches over `client` (the session's identified client).
    pub fn new(client: NodeClient) -> Self {
        Self { client }
    }
}

impl BlobSource for GrpcSource {
    fn fetch(
        &self,
        digest: &str,
        offset: u64,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Result<Bytes, String>>, String>> {
        let mut client = self.client.clone();
        let req = pb::FetchBlobRequest {
            digest: digest.to_string(),
            offset,
        };
        Box::pin(async move {
            let stream = client
                .fetch_blob(req)
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            Ok(stream
                .map(|c| {
                    c.map(|c| Bytes::from(c.data))
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                })
                .boxed())
        })
    }
}
