//! The control plane's domain services: what each request does, who may do it, and which
//! events it writes. Handlers in `api` translate proto to these calls; nothing here sees tonic.

mod access;
mod admin;
mod clusters;
mod fleet;
mod image_config;
mod image_gc;
mod image_push;
mod image_quota;
mod image_registry;
mod image_show;
mod images;
mod index;
mod members;
mod nodes;
mod pin;
mod place;
mod pull_grant;
mod reaper;
mod slices;
mod soft;
mod spec;
#[cfg(test)]
mod tests;
mod usage;
mod usage_read;
mod views;
mod watch;

pub use access::ResolvedEndpoint;
pub use clusters::{member_node_name, Speaker, CLUSTER_NAME_MAX};
pub use image_config::RunConfig;
pub use image_gc::{Collected, SYSTEM_OWNER};
pub use image_push::{BlobState, Push, MAX_STATUS_DIGESTS};
pub use image_quota::SiteImageStorage;
pub use image_show::ImageDetails;
pub use images::{ImageView, ResolvedImage};
pub use nodes::{NodeHello, ObservedStatus};
pub use pull_grant::PullScope;
pub use reaper::spawn_reapers;
pub use slices::{EventPage, Renewed, EVENT_PAGE_BYTES};
pub use spec::SliceSpec;
pub use usage::{UsageState, MAX_SAMPLES};
pub use usage_read::{NodeUsage, SliceUsage, SliverUsage};
pub use views::*;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::model::{AdminState, Millis, Node, NodeState};
use crate::store::Db;

/// Shared state of the service.
#[derive(Debug)]
pub struct Core {
    pub db: Db,
    pub cfg: Config,
    pub hub: Hub,
    /// Where every time the core reads comes from (the hub shares it).
    pub clock: SharedClock,
    /// Serialises placement: the fleet index is read, the plan committed and the index updated
    /// under it. The database's guards (`store::hold`) keep another writer from overcommitting.
    place_lock: Mutex<()>,
    /// Slivers whose re-placement failed, so the failure is logged once, not every sweep.
    blocked: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The one feed of appended events that every `WatchEvents` stream reads.
    feed: watch::Feed,
    /// The fleet in memory, for placement and the sweeps (`fleet.rs`, kept by `index.rs`).
    fleet: tokio::sync::OnceCell<std::sync::Mutex<fleet::Fleet>>,
    /// Creates waiting to be placed and committed as a group (`place.rs`).
    creates: std::sync::Mutex<Vec<place::Job>>,
    /// Where placements are counted (set once by `run`; unset in core tests).
    pub placement_metrics: std::sync::OnceLock<crate::metrics::PlacementMetrics>,
    /// The CA that signs node certificates (set once by `run`; unset in core tests).
    pub ca: std::sync::OnceLock<Arc<crate::pki::Ca>>,
    /// Measured usage of slivers and nodes (`usage.rs`).
    pub(crate) usage: UsageState,
    /// The image store's blob directory (`images/blobs.rs`), opened on first use.
    pub(crate) blobs: std::sync::OnceLock<crate::images::BlobDir>,
    /// Mints and checks the pull credentials of Kubernetes sites (set when the registry is
    /// served; `pull_grant.rs`).
    pull: std::sync::OnceLock<crate::images::pull::PullIssuer>,
}

impl Core {
    /// Builds the core over an open database.
    pub fn new(db: Db, cfg: Config) -> Arc<Self> {
        Self::with_clock(db, cfg, Arc::new(SystemClock))
    }

    /// The same, reading time from `clock` (tests move it instead of waiting).
    pub fn with_clock(db: Db, cfg: Config, clock: SharedClock) -> Arc<Self> {
        let hub = Hub::with_clock(cfg.node_ttl, clock.clone());
        Arc::new(Self {
            db,
            cfg,
            hub,
            clock,
            place_lock: Mutex::new(()),
            blocked: Default::default(),
            feed: Default::default(),
            fleet: Default::default(),
            creates: Default::default(),
            placement_metrics: Default::default(),
            ca: Default::default(),
            usage: Default::default(),
            blobs: Default::default(),
            pull: Default::default(),
        })
    }

    /// Now, in epoch milliseconds, by the core's clock.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// A node's state as users see it: the administrator's decision, then liveness.
    pub fn node_state(&self, n: &Node) -> NodeState {
        match n.admin_state {
            AdminState::Draining => NodeState::Draining,
            AdminState::Disabled => NodeState::Disabled,
            AdminState::Active if self.hub.engine_down(&n.name).is_some() => NodeState::EngineDown,
            AdminState::Active if self.hub.is_live(&n.name) => NodeState::Ready,
            AdminState::Active if self.hub.seen(&n.name) || n.last_heartbeat.is_some() => {
                NodeState::Unreachable
            }
            AdminState::Active => NodeState::Enrolling,
        }
    }

    /// Whether what is stored about the node's slivers may be stale: the node is silent, or
    /// it speaks but cannot see its containers.
    pub fn node_blind(&self, n: &Node) -> bool {
        self.hub.engine_down(&n.name).is_some() || self.node_state(n) == NodeState::Unreachable
    }
}

/// Longest duration any request may carry (leases, token lifetimes, drain deadlines are bounded
/// lower by their own rules): beyond it a value is a mistake or an attack, never a plan.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `now + d` in epoch milliseconds, checked: a duration too long to add is refused naming
/// `field`, never wrapped into the past (a drain deadline of i64::MAX seconds once evicted at
/// once) nor saturated into a silent "forever".
pub fn later(now: Millis, field: &str, d: Duration) -> Result<Millis> {
    if d > MAX_DURATION {
        return Err(Error::invalid(format!(
            "{field} of {}s is too long (at most {} days)",
            d.as_secs(),
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    i64::try_from(d.as_millis())
        .ok()
        .and_then(|ms| now.checked_add(ms))
        .ok_or_else(|| Error::invalid(format!("{field} of {}s is too long", d.as_secs())))
}
