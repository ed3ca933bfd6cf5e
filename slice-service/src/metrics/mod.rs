//! Operator metrics in the Prometheus text formats, served on their own plain-HTTP listener
//! (`--metrics-listen`, off by default; `http.rs`).
//!
//! Every service instance has its own [`Metrics`] and registry (no global registry), so tests
//! running several services in one process never share counts. Three kinds of metrics:
//!
//! - calls, counted by a tower layer around every gRPC service (`grpc.rs`);
//! - placements, recorded by the core through a [`PlacementMetrics`] handle;
//! - state (slices, slivers, nodes, streams, the event log, the database pools), computed at
//!   scrape time by [`Metrics::render`]: one grouped COUNT per table through the read pool,
//!   the rest from memory.
//!
//! Label values are bounded: states and kinds from closed sets, gRPC methods from the served
//! descriptors. Nothing is labelled by slice, sliver, user or node.

pub mod grpc;
mod http;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::core::Core;
use crate::error::Error;
use crate::limits::{StreamKind, StreamLimits};
use crate::listener::TrackCalls;
use crate::model::NodeState;
use crate::state::SliverState;

pub use grpc::{GrpcLayer, GrpcMetrics};
pub use http::start;

/// Prefix of every metric name.
pub const PREFIX: &str = "slicebed";

/// Placement latency buckets, in seconds: a placement reads the fleet under a lock.
const PLACEMENT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How one placement (a `CreateSlice`) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlacementOutcome {
    /// The slice and its slivers were committed.
    Placed,
    /// The scheduler found no nodes enough for the request.
    NoCapacity,
    /// The site's slice or sliver quota would be passed.
    Quota,
    /// The request was refused as invalid (bad field, unknown site or member).
    Invalid,
    /// Anything else (database, internal).
    Other,
}

impl PlacementOutcome {
    /// Every outcome, so each shows (as 0) before it first happens.
    pub const ALL: [PlacementOutcome; 5] = [
        PlacementOutcome::Placed,
        PlacementOutcome::NoCapacity,
        PlacementOutcome::Quota,
        PlacementOutcome::Invalid,
        PlacementOutcome::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementOutcome::Placed => "placed",
            PlacementOutcome::NoCapacity => "no_capacity",
            PlacementOutcome::Quota => "quota",
            PlacementOutcome::Invalid => "invalid",
            PlacementOutcome::Other => "other",
        }
    }

    /// The outcome of a `create_slice` result. Quota refusals are told from capacity ones by
    /// their wording ("... of its N live slices", "... its quota of N"); a caller that knows
    /// better passes the outcome itself.
    pub fn of<T>(r: &Result<T, Error>) -> Self {
        match r {
            Ok(_) => PlacementOutcome::Placed,
            Err(Error::Exhausted(m)) if m.contains("quota") || m.contains("live slices") => {
                PlacementOutcome::Quota
            }
            Err(Error::Exhausted(_)) => PlacementOutcome::NoCapacity,
            Err(
                Error::Invalid(_)
                | Error::NotFound { .. }
                | Error::AlreadyExists { .. }
                | Error::Denied(_)
                | Error::Unauthenticated(_),
            ) => PlacementOutcome::Invalid,
            Err(_) => PlacementOutcome::Other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Where the core records placements; cheap to clone. `Default` gives a handle registered
/// nowhere (for the core's tests).
#[derive(Clone, Debug)]
pub struct PlacementMetrics {
    duration: Family<OutcomeLabels, Histogram>,
    total: Family<OutcomeLabels, Counter>,
}

fn placement_histogram() -> Histogram {
    Histogram::new(PLACEMENT_BUCKETS)
}

impl Default for PlacementMetrics {
    fn default() -> Self {
        let m = Self {
            duration: Family::new_with_constructor(placement_histogram as fn() -> Histogram),
            total: Family::default(),
        };
        for o in PlacementOutcome::ALL {
            let l = OutcomeLabels {
                outcome: o.as_str(),
            };
            let _ = m.total.get_or_create(&l);
            let _ = m.duration.get_or_create(&l);
        }
        m
    }
}

impl PlacementMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "placements",
            "Placements (CreateSlice past authentication) by outcome: placed, or refused for no_capacity, quota, invalid or other",
            m.total.clone(),
        );
        r.register_with_unit(
            "placement_duration",
            "Time a placement took (validation, quotas, the scheduler and the commit), by outcome",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    /// Records one placement that took `took` and ended with `outcome`.
    pub fn placement(&self, took: Duration, outcome: PlacementOutcome) {
        let l = OutcomeLabels {
            outcome: outcome.as_str(),
        };
        self.total.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LifeLabels {
    life: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    state: &'static str,
}

const SLICE_LIVES: [&str; 3] = ["live", "deleted", "expired"];

const SLIVER_STATES: [SliverState; 8] = [
    SliverState::Pending,
    SliverState::Creating,
    SliverState::Running,
    SliverState::Exited,
    SliverState::Failed,
    SliverState::Suspended,
    SliverState::Stopping,
    SliverState::Deleted,
];

const NODE_STATES: [NodeState; 6] = [
    NodeState::Enrolling,
    NodeState::Ready,
    NodeState::Unreachable,
    NodeState::Draining,
    NodeState::Disabled,
    NodeState::EngineDown,
];

fn node_state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Enrolling => "enrolling",
        NodeState::Ready => "ready",
        NodeState::Unreachable => "unreachable",
        NodeState::Draining => "draining",
        NodeState::Disabled => "disabled",
        NodeState::EngineDown => "engine_down",
    }
}

const STREAM_KINDS: [(StreamKind, &str); 4] = [
    (StreamKind::Watch, "watch"),
    (StreamKind::Exec, "exec"),
    (StreamKind::Logs, "logs"),
    (StreamKind::Copy, "copy"),
];

/// Gauges set at every scrape.
#[derive(Debug, Default)]
struct StateGauges {
    slices: Family<LifeLabels, Gauge>,
    slivers: Family<StateLabels, Gauge>,
    slivers_unknown: Gauge,
    nodes: Family<StateLabels, Gauge>,
    node_streams: Gauge,
    session_relays: Family<KindLabels, Gauge>,
    watch_streams: Gauge,
    user_streams_max: Family<KindLabels, Gauge>,
    user_streams_cap: Family<KindLabels, Gauge>,
    event_log_last_id: Gauge,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_acquire: Gauge<f64, AtomicU64>,
    connections_open: Gauge,
    connections_max: Gauge,
    scrape_errors: Counter,
}

impl StateGauges {
    fn register(r: &mut Registry) -> Self {
        let g = Self::default();
        r.register(
            "slices",
            "Slices by life (live, deleted, expired; ended slices stay as history)",
            g.slices.clone(),
        );
        r.register(
            "slivers",
            "Slivers by stored state (deleted ones stay as history)",
            g.slivers.clone(),
        );
        r.register(
            "slivers_unknown",
            "Live slivers on a node that is unreachable or whose engine is down: users see them as unknown",
            g.slivers_unknown.clone(),
        );
        r.register(
            "nodes",
            "Nodes by state as users see it (enrolling, ready, unreachable, draining, disabled, engine_down)",
            g.nodes.clone(),
        );
        r.register(
            "node_streams",
            "Node control channels connected now",
            g.node_streams.clone(),
        );
        r.register(
            "session_relays",
            "Researcher sessions (exec, logs, copy) relayed to nodes now, by kind",
            g.session_relays.clone(),
        );
        r.register(
            "watch_streams",
            "WatchEvents streams open now",
            g.watch_streams.clone(),
        );
        r.register(
            "user_streams_max",
            "Long-lived calls of each kind held by the user holding the most (compare with user_streams_cap)",
            g.user_streams_max.clone(),
        );
        r.register(
            "user_streams_cap",
            "Per-user cap on long-lived calls of each kind ([limits] *_streams_per_user)",
            g.user_streams_cap.clone(),
        );
        r.register(
            "event_log_last_id",
            "Id of the newest event-log row (grows by one per event written)",
            g.event_log_last_id.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database connections by pool (write: transactions; read: reads; the same pool on PostgreSQL) and state (busy, idle)",
            g.pool_connections.clone(),
        );
        r.register(
            "db_pool_max_connections",
            "The most connections each database pool may open",
            g.pool_max.clone(),
        );
        r.register_with_unit(
            "db_pool_acquire",
            "How long this scrape waited for a read connection: above zero, callers queue for the pool",
            Unit::Seconds,
            g.pool_acquire.clone(),
        );
        r.register(
            "connections_open",
            "Client and node connections open on the API listener",
            g.connections_open.clone(),
        );
        r.register(
            "connections_max",
            "The cap on open connections ([limits] max_connections)",
            g.connections_max.clone(),
        );
        r.register(
            "metrics_scrape_errors",
            "Scrapes whose database counts failed (the state gauges then keep their last values)",
            g.scrape_errors.clone(),
        );
        // Every state shows, as 0, before the first scrape finds one.
        for life in SLICE_LIVES {
            let _ = g.slices.get_or_create(&LifeLabels { life });
        }
        for s in SLIVER_STATES {
            let _ = g.slivers.get_or_create(&StateLabels { state: s.as_str() });
        }
        for s in NODE_STATES {
            let _ = g.nodes.get_or_create(&StateLabels {
                state: node_state_name(s),
            });
        }
        for (kind, name) in STREAM_KINDS {
            let l = KindLabels { kind: name };
            let _ = g.user_streams_max.get_or_create(&l);
            let _ = g.user_streams_cap.get_or_create(&l);
            if kind != StreamKind::Watch {
                let _ = g.session_relays.get_or_create(&l);
            }
        }
        for pool in ["write", "read"] {
            let _ = g.pool_max.get_or_create(&PoolLabels { pool });
            for state in ["busy", "idle"] {
                let _ = g
                    .pool_connections
                    .get_or_create(&PoolStateLabels { pool, state });
            }
        }
        g
    }
}

/// What the scrape reads besides the database.
#[derive(Clone, Debug)]
pub struct Sources {
    pub core: Arc<Core>,
    /// The long-lived calls users hold (`Api::stream_limits`).
    pub streams: StreamLimits,
    /// The API listener's connections.
    pub connections: Option<TrackCalls>,
}

/// One service instance's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    grpc: GrpcMetrics,
    placement: PlacementMetrics,
    state: StateGauges,
    /// One scrape at a time: the counts cost queries, and concurrent scrapes would interleave.
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// A fresh registry with every metric of the service.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix(PREFIX);
        let grpc = GrpcMetrics::register(&mut registry);
        let placement = PlacementMetrics::register(&mut registry);
        let state = StateGauges::register(&mut registry);
        Arc::new(Self {
            registry,
            grpc,
            placement,
            state,
            scrape: Default::default(),
        })
    }

    /// The tower layer counting gRPC calls.
    pub fn grpc_layer(&self) -> GrpcLayer {
        self.grpc.layer()
    }

    /// The handle the core records placements through.
    pub fn placement(&self) -> PlacementMetrics {
        self.placement.clone()
    }

    /// Refreshes the state gauges, then encodes everything: OpenMetrics text if `openmetrics`,
    /// else the Prometheus text format 0.0.4.
    pub async fn render(&self, src: &Sources, openmetrics: bool) -> String {
        let _one = self.scrape.lock().await;
        if let Err(e) = self.refresh(src).await {
            self.state.scrape_errors.inc();
            tracing::warn!(error = %e, "metrics: counting from the database failed");
        }
        let mut out = String::new();
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }

    /// Sets the gauges from memory first (they cannot fail), then from the database.
    async fn refresh(&self, src: &Sources) -> crate::error::Result<()> {
        let g = &self.state;
        for (kind, name) in STREAM_KINDS {
            let (all, most) = src.streams.held(kind);
            let l = KindLabels { kind: name };
            g.user_streams_max.get_or_create(&l).set(most as i64);
            let cap = src.streams.caps();
            let cap = match kind {
                StreamKind::Watch => cap.watch,
                StreamKind::Exec => cap.exec,
                StreamKind::Logs => cap.logs,
                StreamKind::Copy => cap.copy,
            };
            g.user_streams_cap.get_or_create(&l).set(cap as i64);
            if kind == StreamKind::Watch {
                g.watch_streams.set(all as i64);
            } else {
                g.session_relays.get_or_create(&l).set(all as i64);
            }
        }
        if let Some(c) = &src.connections {
            g.connections_open.set(c.open_connections() as i64);
        }
        g.connections_max
            .set(src.core.cfg.limits.max_connections as i64);
        let (write, read) = src.core.db.pool_stats();
        for (pool, s) in [("write", write), ("read", read)] {
            g.pool_max
                .get_or_create(&PoolLabels { pool })
                .set(s.max.into());
            let busy = s.size.saturating_sub(s.idle);
            for (state, n) in [("busy", busy), ("idle", s.idle)] {
                g.pool_connections
                    .get_or_create(&PoolStateLabels { pool, state })
                    .set(n.into());
            }
        }

        let (mut c, waited) = src.core.db.timed_conn().await?;
        g.pool_acquire.set(waited.as_secs_f64());
        let core = &src.core;

        let mut lives: BTreeMap<&'static str, i64> = SLICE_LIVES.iter().map(|l| (*l, 0)).collect();
        for (life, n) in crate::store::count_slices_by_life(&mut c).await? {
            if let Some(v) = lives.get_mut(life.as_str()) {
                *v += n;
            }
        }
        for (life, n) in lives {
            g.slices.get_or_create(&LifeLabels { life }).set(n);
        }

        let nodes = crate::store::list_nodes(&mut c, None).await?;
        let mut by_state: BTreeMap<&'static str, i64> = NODE_STATES
            .iter()
            .map(|s| (node_state_name(*s), 0))
            .collect();
        let mut blind = std::collections::HashSet::new();
        let mut streams = 0;
        for n in &nodes {
            *by_state
                .entry(node_state_name(core.node_state(n)))
                .or_default() += 1;
            if core.node_blind(n) {
                blind.insert(n.name.as_str());
            }
            if core.hub.is_connected(&n.name) {
                streams += 1;
            }
        }
        for (state, n) in by_state {
            g.nodes.get_or_create(&StateLabels { state }).set(n);
        }
        g.node_streams.set(streams);

        let mut states: BTreeMap<&'static str, i64> =
            SLIVER_STATES.iter().map(|s| (s.as_str(), 0)).collect();
        let mut unknown = 0;
        for (node, state, n) in crate::store::count_slivers_by_node_state(&mut c).await? {
            let Some(s) = SliverState::parse(&state) else {
                continue;
            };
            *states.entry(s.as_str()).or_default() += n;
            if s.is_live() && blind.contains(node.as_str()) {
                unknown += n;
            }
        }
        for (state, n) in states {
            g.slivers.get_or_create(&StateLabels { state }).set(n);
        }
        g.slivers_unknown.set(unknown);

        g.event_log_last_id
            .set(crate::store::max_event_id(&mut c).await?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_outcomes_are_bounded_and_classified() {
        let ok: Result<(), Error> = Ok(());
        assert_eq!(PlacementOutcome::of(&ok), PlacementOutcome::Placed);
        let quota: Result<(), Error> = Err(Error::Exhausted(
            "site mit already holds 3 of its 3 live slices".into(),
        ));
        assert_eq!(PlacementOutcome::of(&quota), PlacementOutcome::Quota);
        let quota: Result<(), Error> = Err(Error::Exhausted(
            "site mit holds 9 live slivers; 2 more would pass its quota of 10".into(),
        ));
        assert_eq!(PlacementOutcome::of(&quota), PlacementOutcome::Quota);
        let full: Result<(), Error> = Err(Error::Exhausted("no node has 4 CPUs free".into()));
        assert_eq!(PlacementOutcome::of(&full), PlacementOutcome::NoCapacity);
        let bad: Result<(), Error> = Err(Error::invalid("unknown site(s): x"));
        assert_eq!(PlacementOutcome::of(&bad), PlacementOutcome::Invalid);
        let db: Result<(), Error> = Err(Error::Internal("boom".into()));
        assert_eq!(PlacementOutcome::of(&db), PlacementOutcome::Other);
    }

    #[test]
    fn placements_show_every_outcome_and_count_into_the_registry() {
        let m = Metrics::new();
        m.placement()
            .placement(Duration::from_millis(3), PlacementOutcome::Placed);
        m.placement()
            .placement(Duration::from_millis(1), PlacementOutcome::NoCapacity);
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &m.registry).unwrap();
        assert!(
            t.contains("slicebed_placements_total{outcome=\"placed\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("slicebed_placements_total{outcome=\"no_capacity\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("slicebed_placements_total{outcome=\"quota\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("slicebed_placement_duration_seconds_count{outcome=\"placed\"} 1"),
            "{t}"
        );
        // Two registries never share counts.
        let other = Metrics::new();
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &other.registry).unwrap();
        assert!(
            t.contains("slicebed_placements_total{outcome=\"placed\"} 0"),
            "{t}"
        );
    }

    /// Every `slicebed_*` name in `text` (but the node manager's).
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices("slicebed_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("slicebed_node_manager") && !name.ends_with('_') {
                out.insert(name);
            }
        }
        out
    }

    #[test]
    fn the_dashboard_and_the_operations_guide_use_only_names_the_service_exports() {
        let m = Metrics::new();
        // One call, so the call families have a series.
        grpc::tests_support::one_call(&m.grpc);
        let mut t = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut t, &m.registry).unwrap();
        let mut exported = std::collections::BTreeSet::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                exported.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{suffix}"));
                    }
                }
            }
        }
        for (what, text) in [
            (
                "deploy/grafana/slicebed.json",
                include_str!("../../../deploy/grafana/slicebed.json"),
            ),
            (
                "docs/operations.md",
                include_str!("../../../docs/operations.md"),
            ),
        ] {
            let used = names_in(text);
            assert!(used.len() > 10, "{what}: {used:?}");
            let unknown: Vec<_> = used.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{what} uses {unknown:?}; exported: {exported:?}"
            );
        }
    }
}
