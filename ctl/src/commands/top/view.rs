//! `top`'s JSON views: field names are a promise to scripts (add, never rename).

use anyhow::Result;
use serde::Serialize;
use slicebed_proto::v1 as pb;

use crate::{
    output::view::{node_state, slice_state, sliver_state, ResourcesView},
    timefmt::rfc3339,
};

/// Measured usage, as JSON.
#[derive(Debug, Default, Serialize)]
pub struct UsageView {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub disk_bytes: i64,
    pub net_rx_bytes_per_second: i64,
    pub net_tx_bytes_per_second: i64,
}

impl From<Option<&pb::Usage>> for UsageView {
    fn from(u: Option<&pb::Usage>) -> Self {
        let u = u.cloned().unwrap_or_default();
        UsageView {
            cpu_millis: u.cpu_millis,
            memory_bytes: u.memory_bytes,
            disk_bytes: u.disk_bytes,
            net_rx_bytes_per_second: u.net_rx_bytes_per_second,
            net_tx_bytes_per_second: u.net_tx_bytes_per_second,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PointView {
    pub at: Option<String>,
    pub span_seconds: i64,
    pub mean: UsageView,
    pub peak: UsageView,
}

fn points(h: &[pb::UsagePoint]) -> Vec<PointView> {
    h.iter()
        .map(|p| PointView {
            at: rfc3339(p.at.as_ref()),
            span_seconds: p.span.map(|d| d.seconds).unwrap_or(0),
            mean: p.mean.as_ref().into(),
            peak: p.peak.as_ref().into(),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct SliverTop {
    pub sliver_id: String,
    pub index: u32,
    pub node: String,
    pub site: String,
    pub state: String,
    pub limits: ResourcesView,
    /// Absent when the node sent no recent measurement.
    pub usage: Option<UsageView>,
    pub sampled_at: Option<String>,
    pub history: Vec<PointView>,
}

impl From<&pb::SliverUsage> for SliverTop {
    fn from(v: &pb::SliverUsage) -> Self {
        SliverTop {
            sliver_id: v.sliver_id.clone(),
            index: v.index,
            node: v.node.clone(),
            site: v.site.clone(),
            state: sliver_state(v.state()),
            limits: v.limits.as_ref().into(),
            usage: v.current.as_ref().map(|u| Some(u).into()),
            sampled_at: rfc3339(v.sampled_at.as_ref()),
            history: points(&v.history),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SliceTop {
    pub name: String,
    pub owner: String,
    pub site: String,
    pub state: String,
    /// Slivers not deleted, and those with a recent measurement.
    pub slivers: u32,
    pub reporting: u32,
    pub usage: UsageView,
    pub limits: ResourcesView,
    pub sliver_usage: Vec<SliverTop>,
}

impl From<&pb::SliceUsage> for SliceTop {
    fn from(s: &pb::SliceUsage) -> Self {
        SliceTop {
            name: s.name.clone(),
            owner: s.owner.clone(),
            site: s.site.clone(),
            state: slice_state(s.state()),
            slivers: s.slivers,
            reporting: s.reporting,
            usage: s.total.as_ref().into(),
            limits: s.limits.as_ref().into(),
            sliver_usage: s.sliver_usage.iter().map(SliverTop::from).collect(),
        }
    }
}

impl SliceTop {
    /// The slice's totals only (the list of slices).
    pub fn without_slivers(mut self) -> Self {
        self.sliver_usage.clear();
        self
    }
}

#[derive(Debug, Serialize)]
pub struct NodeTop {
    pub name: String,
    pub site: String,
    pub state: String,
    pub capacity: ResourcesView,
    pub allocated: ResourcesView,
    pub usage: UsageView,
    pub reporting: u32,
    pub sampled_at: Option<String>,
    pub history: Vec<PointView>,
}

pub fn nodes_view(nodes: &[pb::NodeUsage]) -> Vec<NodeTop> {
    nodes
        .iter()
        .map(|n| NodeTop {
            name: n.name.clone(),
            site: n.site.clone(),
            state: node_state(n.state()),
            capacity: n.capacity.as_ref().into(),
            allocated: n.allocated.as_ref().into(),
            usage: n.total.as_ref().into(),
            reporting: n.reporting,
            sampled_at: rfc3339(n.sampled_at.as_ref()),
            history: points(&n.history),
        })
        .collect()
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(v)?))
}
