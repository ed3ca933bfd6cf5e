//! Read models: objects combined with derived, in-memory state (liveness, slice status).

use crate::model::{Node, NodeState, Slice, SliceLife, Sliver};
use crate::state::SliverState;
use slicebed_units::Resources;

/// A node with its derived state and allocation.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: Node,
    pub state: NodeState,
    pub allocated: Resources,
    pub usage: Resources,
    pub slivers: u32,
    /// Set while the node reports its container engine does not answer.
    pub engine_down: Option<crate::hub::EngineDown>,
    /// Its cluster's identity was revoked (a member only).
    pub cluster_revoked: bool,
}

/// A sliver as users see it.
#[derive(Debug, Clone)]
pub struct SliverView {
    pub sliver: Sliver,
    pub node_address: String,
    /// Its node is unreachable or cannot see its containers: the stored state may be stale,
    /// so it shows as unknown.
    pub unknown: bool,
}

/// The overall state of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceStatus {
    Provisioning,
    Ready,
    Degraded,
    Deleted,
    Expired,
}

/// A slice with its slivers.
#[derive(Debug, Clone)]
pub struct SliceView {
    pub slice: Slice,
    pub slivers: Vec<SliverView>,
}

impl SliceView {
    /// Derived from the slivers unless the slice ended.
    pub fn status(&self) -> SliceStatus {
        match self.slice.life {
            SliceLife::Deleted => return SliceStatus::Deleted,
            SliceLife::Expired => return SliceStatus::Expired,
            SliceLife::Live => {}
        }
        if self
            .slivers
            .iter()
            .any(|v| v.unknown || v.sliver.state == SliverState::Failed)
        {
            return SliceStatus::Degraded;
        }
        if !self.slivers.is_empty()
            && self
                .slivers
                .iter()
                .all(|v| matches!(v.sliver.state, SliverState::Running | SliverState::Exited))
        {
            SliceStatus::Ready
        } else {
            SliceStatus::Provisioning
        }
    }
}
