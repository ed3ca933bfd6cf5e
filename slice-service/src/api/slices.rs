//! `slicebed.v1.SliceService` handlers.

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::slice_service_server::SliceService;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::{convert as cv, Api};
use crate::store::SliceKey;

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
        let from = page_key(&r.page_token)?;
        let page = self
            .core
            .list_slices(&p, r.include_deleted, &r.site, from, SLICE_PAGE_ROWS)
            .await?;
        let (slices, next_page_token) = page_by_size(&page.views, page.next.as_ref());
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

    // Usage: handled in usage.rs.
    async fn list_slice_usage(
        &self,
        req: Request<pb::ListSliceUsageRequest>,
    ) -> R<pb::ListSliceUsageResponse> {
        self.list_slice_usage_call(req).await
    }

    async fn get_slice_usage(&self, req: Request<pb::GetSliceUsageRequest>) -> R<pb::SliceUsage> {
        self.get_slice_usage_call(req).await
    }

    async fn list_node_usage(
        &self,
        req: Request<pb::ListNodeUsageRequest>,
    ) -> R<pb::ListNodeUsageResponse> {
        self.list_node_usage_call(req).await
    }
}

/// Largest encoded size of one ListSlices page: well under the 4 MiB clients decode by default.
const SLICE_PAGE_BYTES: usize = 1 << 20;

/// Slices read for one ListSlices page; fewer are sent when they do not fit in
/// `SLICE_PAGE_BYTES`.
pub(super) const SLICE_PAGE_ROWS: usize = 100;

/// Longest page token this service gives: a slice name and id (both bounded) in hex.
const PAGE_TOKEN_MAX: usize = 1024;

/// The page token of a listing position: where the next page starts (that slice included).
pub(super) fn key_token(k: &SliceKey) -> String {
    format!(
        "{}.{}.{}",
        hex::encode(&k.name),
        k.created_at,
        hex::encode(&k.id)
    )
}

/// The position a page token names; empty is the first page. Anything this service did not
/// give is InvalidArgument naming page_token.
pub(super) fn page_key(token: &str) -> Result<Option<SliceKey>, crate::error::Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        let shown = if token.len() <= 64 {
            format!("{token:?} ")
        } else {
            String::new()
        };
        crate::error::Error::invalid(format!("page_token {shown}is not one this service gave"))
    };
    if token.len() > PAGE_TOKEN_MAX {
        return Err(bad());
    }
    let text = |h: &str| hex::decode(h).ok().and_then(|b| String::from_utf8(b).ok());
    let mut parts = token.split('.');
    let (Some(name), Some(at), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    match (text(name), at.parse::<i64>(), text(id)) {
        (Some(name), Ok(created_at), Some(id)) if !name.is_empty() && !id.is_empty() => {
            Ok(Some(SliceKey {
                name,
                created_at,
                id,
            }))
        }
        _ => Err(bad()),
    }
}

/// The views that fit in `SLICE_PAGE_BYTES` (at least one), and the token of the rest: the
/// first view left out, else `next` (the first slice after them), else empty (the last page).
fn page_by_size(
    views: &[crate::core::SliceView],
    next: Option<&SliceKey>,
) -> (Vec<pb::Slice>, String) {
    use prost::Message;
    let (mut out, mut size) = (Vec::new(), 0usize);
    for v in views {
        let s = cv::slice(v);
        let len = s.encoded_len() + 8;
        if !out.is_empty() && size + len > SLICE_PAGE_BYTES {
            return (out, key_token(&SliceKey::of(&v.slice)));
        }
        size += len;
        out.push(s);
    }
    (out, next.map(key_token).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_others_are_refused_naming_the_field() {
        let k = SliceKey {
            name: "exp.1".into(),
            created_at: -5,
            id: "0a1b".into(),
        };
        assert_eq!(page_key(&key_token(&k)).unwrap(), Some(k));
        assert_eq!(page_key("").unwrap(), None);
        for bad in [
            "5",
            "a.b.c",
            "61.1.62.63",
            "61..62",
            ".1.62",
            "61.1.",
            "zz.1.62",
            "ff.1.62",
            &"6".repeat(2000),
        ] {
            let e = page_key(bad).unwrap_err().to_string();
            assert!(e.contains("page_token"), "{bad}: {e}");
        }
    }
}
