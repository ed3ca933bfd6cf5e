//! Usage: the heartbeat's per-sliver measurements in, and `ListSliceUsage`, `GetSliceUsage`
//! and `ListNodeUsage` out (their handlers are named in `slices.rs`, which implements the
//! service). Conversions only; who may see what is decided by the core.

use slicebed_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::slices::{key_token, page_key, SLICE_PAGE_ROWS};
use super::{convert as cv, Api};
use crate::core::{NodeUsage, SliceStatus, SliceUsage, SliverUsage};
use crate::usage::{Usage, UsagePoint};

type R<T> = Result<Response<T>, Status>;

/// A heartbeat's measurements as (sliver id, usage); the service's clock times them.
pub fn samples_in(s: Vec<pb::SliverSample>) -> Vec<(String, Usage)> {
    s.into_iter()
        .take(crate::core::MAX_SAMPLES)
        .map(|s| {
            let u = Usage {
                cpu_millis: s.cpu_millis,
                memory_bytes: s.memory_bytes,
                disk_bytes: s.disk_bytes,
                net_rx_bps: s.net_rx_bytes_per_second,
                net_tx_bps: s.net_tx_bytes_per_second,
            };
            (s.sliver_id, u)
        })
        .collect()
}

fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        cpu_millis: u.cpu_millis,
        memory_bytes: u.memory_bytes,
        disk_bytes: u.disk_bytes,
        net_rx_bytes_per_second: u.net_rx_bps,
        net_tx_bytes_per_second: u.net_tx_bps,
    }
}

fn point(p: &UsagePoint) -> pb::UsagePoint {
    pb::UsagePoint {
        at: cv::ts(p.at),
        span: Some(cv::pb_duration(std::time::Duration::from_millis(
            p.span_ms.max(0) as u64,
        ))),
        mean: Some(usage(p.mean)),
        peak: Some(usage(p.peak)),
    }
}

fn sliver(s: &SliverUsage) -> pb::SliverUsage {
    let shown = cv::sliver(&s.view);
    pb::SliverUsage {
        sliver_id: shown.id,
        index: shown.index,
        node: shown.node,
        site: shown.site,
        state: shown.state,
        limits: shown.resources,
        current: s.current.map(|(_, u)| usage(u)),
        sampled_at: s.current.and_then(|(t, _)| cv::ts(t)),
        history: s.history.iter().map(point).collect(),
    }
}

fn slice_state(s: SliceStatus) -> pb::SliceState {
    match s {
        SliceStatus::Provisioning => pb::SliceState::Provisioning,
        SliceStatus::Ready => pb::SliceState::Ready,
        SliceStatus::Degraded => pb::SliceState::Degraded,
        SliceStatus::Deleted => pb::SliceState::Deleted,
        SliceStatus::Expired => pb::SliceState::Expired,
    }
}

fn slice(u: &SliceUsage) -> pb::SliceUsage {
    pb::SliceUsage {
        name: u.slice.name.clone(),
        owner: u.slice.owner.clone(),
        site: u.slice.site.clone(),
        state: slice_state(u.status) as i32,
        total: Some(usage(u.total)),
        limits: Some(cv::res(u.limits)),
        slivers: u.slivers,
        reporting: u.reporting,
        sliver_usage: u.sliver_usage.iter().map(sliver).collect(),
    }
}

fn node(n: &NodeUsage) -> pb::NodeUsage {
    let v = &n.node;
    pb::NodeUsage {
        name: v.node.name.clone(),
        site: v.node.site.clone(),
        state: cv::node_state(v.state) as i32,
        capacity: Some(cv::res(v.node.capacity)),
        allocated: Some(cv::res(v.allocated)),
        total: Some(usage(n.current.map(|c| c.1).unwrap_or_default())),
        reporting: n.current.map(|c| c.2).unwrap_or_default(),
        sampled_at: n.current.and_then(|c| cv::ts(c.0)),
        history: n.history.iter().map(point).collect(),
    }
}

impl Api {
    pub(super) async fn list_slice_usage_call(
        &self,
        req: Request<pb::ListSliceUsageRequest>,
    ) -> R<pb::ListSliceUsageResponse> {
        let p = self.principal(&req).await?;
        let from = page_key(&req.get_ref().page_token)?;
        let (slices, next) = self.core.slices_usage(&p, from, SLICE_PAGE_ROWS).await?;
        Ok(Response::new(pb::ListSliceUsageResponse {
            slices: slices.iter().map(slice).collect(),
            next_page_token: next.as_ref().map(key_token).unwrap_or_default(),
        }))
    }

    pub(super) async fn get_slice_usage_call(
        &self,
        req: Request<pb::GetSliceUsageRequest>,
    ) -> R<pb::SliceUsage> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let history = cv::duration("history", r.history)?;
        let u = self.core.slice_usage(&p, &r.name, history).await?;
        Ok(Response::new(slice(&u)))
    }

    pub(super) async fn list_node_usage_call(
        &self,
        req: Request<pb::ListNodeUsageRequest>,
    ) -> R<pb::ListNodeUsageResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let history = cv::duration("history", r.history)?;
        let nodes = self.core.nodes_usage(&p, Some(&r.node), history).await?;
        Ok(Response::new(pb::ListNodeUsageResponse {
            nodes: nodes.iter().map(node).collect(),
        }))
    }
}
