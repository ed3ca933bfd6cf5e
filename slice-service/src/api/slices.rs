//! `slicebed.v1.SliceService` handlers.

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::slice_service_server::SliceService;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::{convert as cv, Api};

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl SliceService for Api {
    async fn create_slice(
        &self,
        req: Request<pb::CreateSliceRequest>,
    ) -> R<pb::CreateSliceResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let spec = cv::slice_spec_in(r)?;
        let (view, warnings) = self.core.create_slice(&p, spec).await?;
        Ok(Response::new(pb::CreateSliceResponse {
            slice: Some(cv::slice(&view)),
            warnings,
        }))
    }

    async fn get_slice(&self, req: Request<pb::GetSliceRequest>) -> R<pb::Slice> {
        let p = self.principal(&req).await?;
        let v = self.core.get_slice(&p, &req.get_ref().name).await?;
        Ok(Response::new(cv::slice(&v)))
    }

    async fn list_slices(&self, req: Request<pb::ListSlicesRequest>) -> R<pb::ListSlicesResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let views = self
            .core
            .list_slices(&p, r.include_deleted, &r.site)
            .await?;
        let (slices, next_page_token) = page_by_size(&views, &r.page_token)?;
        Ok(Response::new(pb::ListSlicesResponse {
            slices,
            next_page_token,
        }))
    }

    async fn renew_slice(&self, req: Request<pb::RenewSliceRequest>) -> R<pb::RenewSliceResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let renewed = self
            .core
            .renew_slice(&p, &r.name, cv::duration("duration", r.duration)?)
            .await?;
        Ok(Response::new(pb::RenewSliceResponse {
            slice: Some(cv::slice(&renewed.view)),
            note: renewed.note,
        }))
    }

    async fn delete_slice(
        &self,
        req: Request<pb::DeleteSliceRequest>,
    ) -> R<pb::DeleteSliceResponse> {
        let p = self.principal(&req).await?;
        self.core.delete_slice(&p, &req.get_ref().name).await?;
        Ok(Response::new(pb::DeleteSliceResponse {}))
    }

    async fn list_events(&self, req: Request<pb::ListEventsRequest>) -> R<pb::ListEventsResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let page = self
            .core
            .list_events_page(&p, &r.object, r.after_id, r.before_id, r.limit)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.events.iter().map(cv::event).collect(),
            truncated: page.truncated,
        }))
    }

    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> R<pb::ListResourcesResponse> {
        let p = self.principal(&req).await?;
        let (sites, nodes) = self.core.resources(&p).await?;
        let sites = sites
            .iter()
            .map(|s| pb::SiteResources {
                site: s.name.clone(),
                enabled: s.enabled,
                nodes: nodes
                    .iter()
                    .filter(|n| n.node.site == s.name)
                    .map(|n| pb::NodeResources {
                        name: n.node.name.clone(),
                        state: cv::node_state(n.state) as i32,
                        capacity: Some(cv::res(n.node.capacity)),
                        allocated: Some(cv::res(n.allocated)),
                        slivers: n.slivers,
                        labels: n.node.labels.clone().into_iter().collect(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListResourcesResponse { sites }))
    }

    type WatchEventsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> R<Self::WatchEventsStream> {
        let (p, token, secret) = self.principal_token_of(req.metadata()).await?;
        let r = req.into_inner();
        let slot = self
            .limits
            .reserve(&p.user()?.name, crate::limits::StreamKind::Watch)?;
        // Checks visibility now; then events come from the core's one feed, not a poll.
        let rx = self.core.watch_events(&p, &r.object, r.after_id).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |e| {
            // The slot is held for as long as the stream is.
            let _held = &slot;
            e.map(|e| cv::event(&e)).map_err(Status::from)
        });
        // Ends the stream when the token is revoked or expires.
        Ok(Response::new(self.guarded(secret, token, Box::pin(stream))))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> R<pb::WhoAmIResponse> {
        let (p, token, _) = self.principal_token_of(req.metadata()).await?;
        let u = p.user()?;
        Ok(Response::new(pb::WhoAmIResponse {
            user: u.name.clone(),
            role: cv::role(u.role) as i32,
            site: u.site.clone().unwrap_or_default(),
            token_id: token.id,
            token_expires_at: cv::ts_opt(token.expires_at),
        }))
    }
}

/// Largest encoded size of one ListSlices page: well under the 4 MiB clients decode by default.
const SLICE_PAGE_BYTES: usize = 1 << 20;

/// The slices from `token` (an offset this function gave, or empty for the first) that fit in
/// `SLICE_PAGE_BYTES` (at least one), and the token of the rest (empty when none is left).
fn page_by_size(
    views: &[crate::core::SliceView],
    token: &str,
) -> Result<(Vec<pb::Slice>, String), crate::error::Error> {
    use prost::Message;
    let skip: usize = match token {
        "" => 0,
        t => t.parse().map_err(|_| {
            crate::error::Error::invalid(format!("page_token {t:?} is not one this service gave"))
        })?,
    };
    let (mut out, mut size) = (Vec::new(), 0usize);
    for (i, v) in views.iter().enumerate().skip(skip) {
        let s = cv::slice(v);
        let len = s.encoded_len() + 8;
        if !out.is_empty() && size + len > SLICE_PAGE_BYTES {
            return Ok((out, i.to_string()));
        }
        size += len;
        out.push(s);
    }
    Ok((out, String::new()))
}
