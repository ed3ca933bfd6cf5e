//! `slicebed.v1.ImageService` handlers: the image store's push, list, show, tag, delete and
//! visibility calls, and their proto conversions. Authenticate, convert, call the core; the
//! rules (who may, quotas, limits) are `core/images.rs` and its siblings'.

use slicebed_image::{Digest, CHUNK_BYTES};
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status, Streaming};

use super::{convert as cv, Api};
use crate::auth::Principal;
use crate::core::{ImageView, Push, SiteImageStorage};
use crate::error::Error;
use crate::store::Visibility;

type R<T> = Result<Response<T>, Status>;

fn visibility(v: Visibility) -> pb::ImageVisibility {
    match v {
        Visibility::Private => pb::ImageVisibility::Private,
        Visibility::Site => pb::ImageVisibility::Site,
        Visibility::Public => pb::ImageVisibility::Public,
    }
}

fn visibility_in(v: i32) -> Result<Visibility, Error> {
    match pb::ImageVisibility::try_from(v) {
        Ok(pb::ImageVisibility::Private) => Ok(Visibility::Private),
        Ok(pb::ImageVisibility::Site) => Ok(Visibility::Site),
        Ok(pb::ImageVisibility::Public) => Ok(Visibility::Public),
        _ => Err(Error::invalid(format!(
            "visibility: unknown value {v} (private, site or public)"
        ))),
    }
}

/// The proto form of an image.
pub fn image(v: ImageView) -> pb::Image {
    let (run_config, slices, hidden_slices) = match v.details {
        Some(d) => (
            Some(pb::ImageRunConfig {
                entrypoint: d.run.entrypoint,
                cmd: d.run.cmd,
                env: d.run.env,
                working_dir: d.run.working_dir,
                exposed_ports: d.run.exposed_ports,
                user: d.run.user,
                os: d.run.os,
                architecture: d.run.architecture,
                truncated: d.run.truncated,
            }),
            d.slices,
            d.hidden_slices,
        ),
        None => (None, Vec::new(), 0),
    };
    pb::Image {
        run_config,
        slices,
        hidden_slices,
        name: v.name,
        digest: v.digest,
        tags: v.tags,
        owner: v.owner,
        site: v.site,
        visibility: visibility(v.visibility) as i32,
        size: v.size,
        config_digest: v.config_digest,
        config_size: v.config_size,
        layers: v
            .layers
            .into_iter()
            .map(|(digest, size)| pb::ImageLayer { digest, size })
            .collect(),
        created_at: cv::ts(v.created_at),
    }
}

/// The proto form of a site's image storage.
fn site_storage(s: SiteImageStorage) -> pb::SiteImageStorage {
    pb::SiteImageStorage {
        used_bytes: s.used,
        reserved_bytes: s.reserved,
        quota_bytes: s.quota,
        quota_overridden: s.overridden,
    }
}

impl Api {
    /// `site` with its image storage filled in (AdminService's site answers).
    pub(super) async fn with_image_storage(
        &self,
        p: &Principal,
        mut site: pb::Site,
    ) -> Result<pb::Site, Error> {
        let s = self.core.site_image_storage(p, &site.name).await?;
        site.images = Some(site_storage(s));
        Ok(site)
    }
}

fn check_chunk(c: &pb::BlobChunk, digest: &str, size: u64) -> Result<(), Error> {
    if c.digest != digest || c.size != size {
        return Err(Error::invalid(format!(
            "every chunk of a push must name the same digest and size ({digest}, {size}); got ({}, {})",
            c.digest, c.size
        )));
    }
    if c.data.len() > CHUNK_BYTES {
        return Err(Error::invalid(format!(
            "chunk of {} bytes; at most {CHUNK_BYTES} per chunk",
            c.data.len()
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl ImageService for Api {
    async fn blob_status(&self, req: Request<pb::BlobStatusRequest>) -> R<pb::BlobStatusResponse> {
        let p = self.principal(&req).await?;
        let states = self.core.blob_status(&p, &req.into_inner().digests).await?;
        let blobs = states
            .into_iter()
            .map(|s| pb::BlobState {
                digest: s.digest,
                present: s.present,
                received: s.received,
                size: s.size,
            })
            .collect();
        Ok(Response::new(pb::BlobStatusResponse { blobs }))
    }

    async fn push_blob(&self, req: Request<Streaming<pb::BlobChunk>>) -> R<pb::PushBlobResponse> {
        let (md, _, mut inbound) = req.into_parts();
        let p = self.principal_of(&md).await?;
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Error::invalid("PushBlob: the stream held no chunk"))?;
        let (digest_s, size) = (first.digest.clone(), first.size);
        check_chunk(&first, &digest_s, size)?;
        let (user, mut upload) = match self.core.push_begin(&p, &digest_s, size).await? {
            Push::Done { digest, size } => {
                return Ok(Response::new(pb::PushBlobResponse {
                    digest: digest.to_string(),
                    received: size,
                    complete: true,
                }))
            }
            Push::Upload { user, upload } => (user, upload),
        };
        let digest = Digest::parse(&digest_s).map_err(|e| Error::invalid(e.to_string()))?;
        let mut next = Some(first);
        loop {
            if let Some(chunk) = next.take() {
                check_chunk(&chunk, &digest_s, size)?;
                upload.append(chunk.offset, &chunk.data).await?;
                if upload.is_full() {
                    let size = self.core.push_finish(&p, &user, upload, &digest).await?;
                    return Ok(Response::new(pb::PushBlobResponse {
                        digest: digest_s,
                        received: size,
                        complete: true,
                    }));
                }
            }
            match inbound.message().await {
                Ok(Some(chunk)) => next = Some(chunk),
                // The client stopped early or went away: keep what arrived for the resume.
                Ok(None) | Err(_) => {
                    let received = upload.keep().await?;
                    return Ok(Response::new(pb::PushBlobResponse {
                        digest: digest_s,
                        received,
                        complete: false,
                    }));
                }
            }
        }
    }

    async fn commit_image(&self, req: Request<pb::CommitImageRequest>) -> R<pb::Image> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let v = self
            .core
            .commit_image(&p, &r.reference, &r.manifest)
            .await?;
        Ok(Response::new(image(v)))
    }

    async fn list_images(&self, req: Request<pb::ListImagesRequest>) -> R<pb::ListImagesResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let images = self.core.list_images(&p, &r.name, r.mine).await?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.into_iter().map(image).collect(),
        }))
    }

    async fn get_image(&self, req: Request<pb::GetImageRequest>) -> R<pb::Image> {
        let p = self.principal(&req).await?;
        let v = self.core.get_image(&p, &req.into_inner().reference).await?;
        Ok(Response::new(image(v)))
    }

    async fn tag_image(&self, req: Request<pb::TagImageRequest>) -> R<pb::Image> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let v = self.core.tag_image(&p, &r.source, &r.target).await?;
        Ok(Response::new(image(v)))
    }

    async fn delete_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> R<pb::DeleteImageResponse> {
        let p = self.principal(&req).await?;
        let c = self
            .core
            .delete_image(&p, &req.into_inner().reference)
            .await?;
        Ok(Response::new(pb::DeleteImageResponse {
            blobs_removed: c.blobs,
            bytes_freed: c.bytes,
        }))
    }

    async fn set_image_visibility(
        &self,
        req: Request<pb::SetImageVisibilityRequest>,
    ) -> R<pb::Image> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let v = visibility_in(r.visibility)?;
        let images = self.core.set_image_visibility(&p, &r.name, v).await?;
        // The repository's newest image stands for it.
        let newest = images
            .into_iter()
            .max_by_key(|i| i.created_at)
            .ok_or_else(|| Error::not_found("image", r.name))?;
        Ok(Response::new(image(newest)))
    }
}
