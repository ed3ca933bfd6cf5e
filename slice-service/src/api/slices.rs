//! `slicebed.v1.SliceService` handlers.

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::slice_service_server::SliceService;
use tonic::{Request, Response, Status};

use super::{convert as cv, Api};
use crate::core::SliceSpec;
use crate::model::NamedPort;

type R<T> = Result<Response<T>, Status>;

/// How often a watch looks for new events.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

#[tonic::async_trait]
impl SliceService for Api {
    async fn create_slice(
        &self,
        req: Request<pb::CreateSliceRequest>,
    ) -> R<pb::CreateSliceResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let spec = SliceSpec {
            name: r.name,
            description: r.description,
            image: r.image,
            command: r.command,
            env: r.env.into_iter().collect(),
            resources: cv::res_in(r.resources),
            ports: r
                .ports
                .into_iter()
                .map(|p| NamedPort {
                    name: p.name,
                    container_port: p.container_port,
                })
                .collect(),
            placement: cv::placement_in(r.placement)?,
            lease: cv::duration("lease", r.lease)?,
            members: r.members,
            restart_policy: cv::restart_in("restart_policy", r.restart_policy)?,
            node_loss: cv::node_loss_in("node_loss", r.node_loss)?,
            replace_after: cv::duration("replace_after", r.replace_after)?,
        };
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
        Ok(Response::new(pb::ListSlicesResponse {
            slices: views.iter().map(cv::slice).collect(),
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
        // Checks visibility once, and fixes where the stream starts.
        let mut after = if r.after_id > 0 {
            r.after_id
        } else {
            self.core.latest_event_id().await?
        };
        self.core.list_events(&p, &r.object, after, 1).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let core = self.core.clone();
        tokio::spawn(async move {
            loop {
                let batch = match core.list_events(&p, &r.object, after, 500).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                for e in &batch {
                    after = after.max(e.id);
                    if tx.send(Ok(cv::event(e))).await.is_err() {
                        return;
                    }
                }
                if batch.len() < 500 {
                    // Events are in the database; a short poll keeps this soft and simple.
                    tokio::select! {
                        _ = tokio::time::sleep(WATCH_POLL) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        // Ends the stream when the token is revoked or expires.
        let stream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(self.guarded(secret, token, stream)))
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
