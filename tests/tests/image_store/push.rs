//! Raw-RPC pushes and fetches for the image store tests: chunked uploads (stopped early on
//! request), images made of given layers, and a node's FetchBlob read to the end.

use slicebed_image::{Digest, ImageConfig, Manifest, RootFs, CHUNK_BYTES};
use slicebed_proto::auth::Bearer;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::image_service_client::ImageServiceClient;
use slicebed_tests::client::channel;
use slicebed_tests::Service;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Status;

pub type Images = ImageServiceClient<InterceptedService<Channel, Bearer>>;

/// An image client acting with `token`.
pub async fn images(svc: &Service, token: &str) -> Images {
    let ch = channel(svc).await;
    ImageServiceClient::with_interceptor(ch, Bearer::new(token).expect("ascii token"))
        .max_decoding_message_size(8 << 20)
}

/// `len` pseudo-random bytes, different for each seed (incompressible, like real layers).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the store holds of each digest, for the caller.
pub async fn status(images: &mut Images, digests: &[&str]) -> Vec<pb::BlobState> {
    images
        .blob_status(pb::BlobStatusRequest {
            digests: digests.iter().map(|d| d.to_string()).collect(),
        })
        .await
        .expect("BlobStatus")
        .into_inner()
        .blobs
}

/// Pushes `data` as `digest` from `from`, in 1 MiB chunks; with `max`, stops after that many.
pub async fn push_from(
    images: &mut Images,
    digest: &str,
    data: &[u8],
    from: u64,
    max: Option<usize>,
) -> Result<pb::PushBlobResponse, Status> {
    let mut chunks: Vec<pb::BlobChunk> = data[from as usize..]
        .chunks(CHUNK_BYTES)
        .scan(from, |at, c| {
            let chunk = pb::BlobChunk {
                digest: digest.into(),
                offset: *at,
                data: c.to_vec(),
                size: data.len() as u64,
            };
            *at += c.len() as u64;
            Some(chunk)
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::BlobChunk {
            digest: digest.into(),
            offset: from,
            data: vec![],
            size: data.len() as u64,
        });
    }
    if let Some(m) = max {
        chunks.truncate(m);
    }
    Ok(images
        .push_blob(tokio_stream::iter(chunks))
        .await?
        .into_inner())
}

/// Pushes `data` under its own digest from `from`.
pub async fn push_chunks(
    images: &mut Images,
    data: &[u8],
    from: u64,
    max: Option<usize>,
) -> Result<pb::PushBlobResponse, Status> {
    push_from(images, &Digest::of(data).to_string(), data, from, max).await
}

/// Pushes `data` announced as `digest` (which may be a lie).
pub async fn push_as(
    images: &mut Images,
    digest: &str,
    data: &[u8],
) -> Result<pb::PushBlobResponse, Status> {
    push_from(images, digest, data, 0, None).await
}

/// An image pushed by `push_image`.
#[derive(Debug)]
pub struct Pushed {
    pub digest: String,
    pub config: String,
    pub config_len: u64,
    pub manifest_len: u64,
    /// Digests uploaded (the others the store already had for the caller).
    pub sent: Vec<String>,
    pub image: pb::Image,
}

/// Commits a manifest of the given blobs as they are.
pub async fn commit_raw(
    images: &mut Images,
    reference: &str,
    layers: &[(String, u64)],
    config: (String, u64),
) -> Result<pb::Image, Status> {
    let d = |s: &str| Digest::parse(s).expect("a digest");
    let layers: Vec<_> = layers.iter().map(|(l, s)| (d(l), *s)).collect();
    let manifest = Manifest::new((d(&config.0), config.1), &layers).to_bytes();
    Ok(images
        .commit_image(pb::CommitImageRequest {
            reference: reference.into(),
            manifest,
        })
        .await?
        .into_inner())
}

/// Pushes an image of `layers` (and a config made distinct by `salt`) the way slicectl does:
/// asks which blobs are missing, uploads those, commits.
pub async fn push_image(
    images: &mut Images,
    reference: &str,
    layers: &[&[u8]],
    salt: &str,
) -> Result<Pushed, Status> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = serde_json::to_vec(&ImageConfig {
        created: None,
        architecture: slicebed_image::base::oci_arch().into(),
        os: "linux".into(),
        config: serde_json::json!({"Cmd": ["/bin/sh"], "Labels": {"salt": salt}}),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: diff_ids.clone(),
        },
    })
    .unwrap();
    let config_d = Digest::of(&config);
    let mut blobs: Vec<(String, &[u8])> = layers
        .iter()
        .map(|l| (Digest::of(l).to_string(), *l))
        .collect();
    blobs.push((config_d.to_string(), &config));
    let names: Vec<&str> = blobs.iter().map(|(d, _)| d.as_str()).collect();
    let have = status(images, &names).await;
    let mut sent = Vec::new();
    for ((d, data), st) in blobs.iter().zip(have) {
        if st.present || sent.contains(d) {
            continue;
        }
        let r = push_from(images, d, data, st.received, None).await?;
        assert!(r.complete, "{d} pushed whole: {r:?}");
        sent.push(d.clone());
    }
    let sizes: Vec<(Digest, u64)> = layers
        .iter()
        .map(|l| (Digest::of(l), l.len() as u64))
        .collect();
    let manifest = Manifest::new((config_d.clone(), config.len() as u64), &sizes).to_bytes();
    let image = images
        .commit_image(pb::CommitImageRequest {
            reference: reference.into(),
            manifest: manifest.clone(),
        })
        .await?
        .into_inner();
    Ok(Pushed {
        digest: Digest::of(&manifest).to_string(),
        config: config_d.to_string(),
        config_len: config.len() as u64,
        manifest_len: manifest.len() as u64,
        sent,
        image,
    })
}

/// Reads a blob through NodeService.FetchBlob from `offset` to its end.
pub async fn fetch<T>(
    node: &mut slicebed_proto::v1::node_service_client::NodeServiceClient<T>,
    digest: &str,
    offset: u64,
) -> Result<Vec<u8>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut s = node
        .fetch_blob(pb::FetchBlobRequest {
            digest: digest.into(),
            offset,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(c) = s.message().await? {
        assert_eq!(c.offset, offset + out.len() as u64, "chunks in order");
        out.extend_from_slice(&c.data);
    }
    Ok(out)
}
