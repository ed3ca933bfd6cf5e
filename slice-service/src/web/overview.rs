//! The public overview's data: sites with their coordinates, nodes with their states, and
//! what the testbed holds against what it has.
//!
//! Anyone who reaches the status page sees this without a token, so it must never carry a
//! slice's name, owner or members, a user, a sliver, or a node's address: counts and node
//! names only. It is read from the fleet index (memory) plus two small queries, and kept for
//! `FRESH` so that page loads cost the database nothing more than one read per interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use slicebed_units::Resources;

use crate::core::Core;
use crate::error::Result;
use crate::model::NodeState;
use crate::store;

/// How long one reading serves page loads.
const FRESH: Duration = Duration::from_secs(2);

/// One node, as the public sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub state: NodeState,
    pub capacity: Resources,
    pub allocated: Resources,
    pub slivers: u32,
}

/// One site with its nodes.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub name: String,
    pub display_name: String,
    pub city: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub enabled: bool,
    pub nodes: Vec<NodeInfo>,
}

/// How a site's nodes are doing, for its dot on the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every node is ready.
    Up,
    /// Some are.
    Partial,
    /// It has nodes and none is ready.
    Down,
    /// It has no nodes.
    Empty,
}

impl Health {
    /// The CSS class and legend key.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Partial => "partial",
            Health::Down => "down",
            Health::Empty => "empty",
        }
    }
}

impl SiteInfo {
    pub fn health(&self) -> Health {
        let ready = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Ready)
            .count();
        match (ready, self.nodes.len()) {
            (_, 0) => Health::Empty,
            (r, n) if r == n => Health::Up,
            (0, _) => Health::Down,
            _ => Health::Partial,
        }
    }
}

/// The whole overview.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub sites: Vec<SiteInfo>,
    pub live_slices: i64,
    /// Slivers that hold capacity (not yet deleted).
    pub slivers: i64,
    pub capacity: Resources,
    pub allocated: Resources,
}

impl Overview {
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.sites.iter().flat_map(|s| s.nodes.iter())
    }
}

/// A node's state as the page and the API's enum values write it.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Enrolling => "enrolling",
        NodeState::Ready => "ready",
        NodeState::Unreachable => "unreachable",
        NodeState::Draining => "draining",
        NodeState::Disabled => "disabled",
        NodeState::EngineDown => "engine_down",
    }
}

/// Reads the overview now.
pub async fn read(core: &Core) -> Result<Overview> {
    core.load_fleet().await?;
    let held = core
        .with_fleet(|f| {
            f.nodes()
                .map(|h| (h.node.clone(), h.allocated, h.slivers))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut c = core.db.conn().await?;
    let sites = store::list_sites(&mut c).await?;
    let live_slices = store::count_slices_by_life(&mut c)
        .await?
        .into_iter()
        .find(|(life, _)| life == "live")
        .map(|(_, n)| n)
        .unwrap_or(0);
    drop(c);
    let mut o = Overview {
        live_slices,
        ..Default::default()
    };
    o.sites = sites
        .into_iter()
        .map(|s| SiteInfo {
            name: s.name,
            display_name: s.display_name,
            city: s.city,
            country: s.country,
            latitude: s.latitude,
            longitude: s.longitude,
            enabled: s.enabled,
            nodes: Vec::new(),
        })
        .collect();
    for (node, allocated, slivers) in held {
        let info = NodeInfo {
            state: core.node_state(&node),
            name: node.name,
            capacity: node.capacity,
            allocated,
            slivers,
        };
        o.slivers += i64::from(info.slivers);
        add(&mut o.capacity, info.capacity);
        add(&mut o.allocated, info.allocated);
        if let Some(s) = o.sites.iter_mut().find(|s| s.name == node.site) {
            s.nodes.push(info);
        }
    }
    for s in &mut o.sites {
        s.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(o)
}

fn add(sum: &mut Resources, r: Resources) {
    sum.cpu_millis += r.cpu_millis;
    sum.memory_bytes += r.memory_bytes;
    sum.disk_bytes += r.disk_bytes;
}

/// The last reading, reused for `FRESH`. The lock is held while reading, so however many
/// visitors arrive at once, the database is read at most once per `FRESH`.
#[derive(Debug, Default)]
pub struct Cached(Mutex<Option<(Instant, Arc<Overview>)>>);

impl Cached {
    pub async fn get(&self, core: &Core) -> Result<Arc<Overview>> {
        let mut last = self.0.lock().await;
        if let Some((at, o)) = last.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(o.clone());
            }
        }
        let o = Arc::new(read(core).await?);
        *last = Some((Instant::now(), o.clone()));
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(state: NodeState) -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            state,
            capacity: Resources::default(),
            allocated: Resources::default(),
            slivers: 0,
        }
    }

    #[test]
    fn a_site_is_as_healthy_as_its_nodes() {
        let mut s = SiteInfo {
            name: "mit".into(),
            display_name: String::new(),
            city: String::new(),
            country: String::new(),
            latitude: 0.0,
            longitude: 0.0,
            enabled: true,
            nodes: vec![],
        };
        assert_eq!(s.health(), Health::Empty);
        s.nodes = vec![node(NodeState::Ready), node(NodeState::Ready)];
        assert_eq!(s.health(), Health::Up);
        s.nodes.push(node(NodeState::EngineDown));
        assert_eq!(s.health(), Health::Partial);
        s.nodes = vec![node(NodeState::Unreachable), node(NodeState::Draining)];
        assert_eq!(s.health(), Health::Down);
    }
}
