//! In-process tests of the core: a real `Core` over a temporary SQLite file, a manual clock,
//! and fake nodes that are nothing but the receiving end of their control channel in the hub,
//! so every upsert and remove the core pushes is recorded exactly as a node would get it.
//!
//! Tests assert what a user would notice: rows, events and commands. They must never sleep,
//! time anything or touch the network: time moves only through `TestBed::advance`.

mod clusters;
mod create;
mod fleet;
mod identity;
mod images;
mod lifecycle;
mod loss;
mod pull;
mod reap;
mod security;
mod status;
mod usage;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use slicebed_units::Resources;
use tokio::sync::mpsc;

use super::{Core, NodeHello, ObservedStatus, SliceSpec};
use crate::auth::Principal;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::hub::NodeCommand;
use crate::model::{Placement, Role, Site, Slice, Sliver};
use crate::state::SliverState;
use crate::store::{self, Db, EventFilter};

/// A command the core pushed down a node's control channel, by sliver id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    Upsert(String),
    Remove(String),
    Session(String),
    /// The node's administrative state as a cordon (`true`: take no new slivers).
    Cordon(bool),
}

/// One event as a user reads it.
#[derive(Debug, Clone)]
pub(super) struct Ev {
    pub actor: String,
    pub object: String,
    pub action: String,
    pub detail: String,
}

/// A service core with sites, users and connected fake nodes, built step by step:
/// `TestBed::new().await.site("mit").await.node("n1", "mit", 1000, 1 << 30).await`.
pub(super) struct TestBed {
    pub core: Arc<Core>,
    pub clock: Arc<ManualClock>,
    pub admin: Principal,
    /// What each node's control channel holds that the test has not read yet.
    channels: BTreeMap<String, mpsc::Receiver<NodeCommand>>,
    _dir: tempfile::TempDir,
}

impl TestBed {
    /// An empty service with its bootstrap admin, over a fresh database.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = Config::for_data_dir(dir.path());
        let db = Db::open(&cfg.database_url).await.expect("database");
        let clock = ManualClock::new();
        let core = Core::with_clock(db, cfg, clock.clone());
        core.bootstrap().await.expect("bootstrap");
        let admin = store::get_user(&mut core.db.conn().await.unwrap(), "admin")
            .await
            .unwrap()
            .expect("bootstrap admin");
        Self {
            core,
            clock,
            admin: Principal::User(admin),
            channels: BTreeMap::new(),
            _dir: dir,
        }
    }

    /// Adds an enabled site without quotas.
    pub async fn site(&mut self, name: &str) -> &mut Self {
        self.site_with_quota(name, 0, 0).await
    }

    /// Adds an enabled site with quotas (0 = unlimited).
    pub async fn site_with_quota(
        &mut self,
        name: &str,
        max_slices: i64,
        max_slivers: i64,
    ) -> &mut Self {
        let site = Site {
            name: name.into(),
            display_name: String::new(),
            city: String::new(),
            country: String::new(),
            latitude: 0.0,
            longitude: 0.0,
            enabled: true,
            max_slices,
            max_slivers,
            created_at: 0,
        };
        self.core.create_site(&self.admin, site).await.unwrap();
        self
    }

    /// Enrolls a node at `site` with an enrollment token and connects it, as a node manager
    /// does; from then on the test reads its control channel with `sent`.
    pub async fn node(
        &mut self,
        name: &str,
        site: &str,
        cpu_millis: i64,
        memory: i64,
    ) -> &mut Self {
        let (_, token) = self
            .core
            .create_enrollment_token(&self.admin, site, None)
            .await
            .unwrap();
        let enroll = Principal::Enroll {
            token_id: token.id,
            site: site.into(),
        };
        self.core
            .enroll(&enroll, hello(name, cpu_millis, memory), |_| {
                Ok(crate::pki::IssuedCert {
                    pem: String::new(),
                    serial: uuid::Uuid::new_v4().simple().to_string(),
                    issued_at: 0,
                    expires_at: i64::MAX,
                })
            })
            .await
            .unwrap();
        self.connect(name, cpu_millis, memory).await;
        self
    }

    /// Records `node`'s control channel as open (for a member whose Hello the test makes
    /// through the core's cluster calls); from then on `sent` reads it.
    pub fn listen(&mut self, node: &str) {
        let (tx, rx) = mpsc::channel(1024);
        self.core.hub.connect(node, tx);
        self.channels.insert(node.into(), rx);
    }

    /// Opens a node's control channel (again) with nothing observed; returns the desired set.
    pub async fn connect(&mut self, name: &str, cpu_millis: i64, memory: i64) -> Vec<String> {
        let (tx, rx) = mpsc::channel(1024);
        self.core.hub.connect(name, tx);
        self.channels.insert(name.into(), rx);
        let (_, desired) = self
            .core
            .node_connected(name, hello(name, cpu_millis, memory), Vec::new(), None)
            .await
            .unwrap();
        desired.into_iter().map(|(_, v)| v.id).collect()
    }

    /// A user of `site`.
    pub async fn user(&self, name: &str, site: &str) -> Principal {
        let (u, _, _) = self
            .core
            .create_user(&self.admin, name, Role::User, Some(site.into()), None)
            .await
            .unwrap();
        Principal::User(u)
    }

    /// Everything pushed to `node` since the last call.
    pub fn sent(&mut self, node: &str) -> Vec<Sent> {
        let rx = self.channels.get_mut(node).expect("a node of the bed");
        let mut out = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            out.push(match cmd {
                NodeCommand::Upsert(b) => Sent::Upsert(b.1.id),
                NodeCommand::Remove(id) => Sent::Remove(id),
                NodeCommand::OpenSession(r) => Sent::Session(r.sliver_id),
                NodeCommand::Admin { cordon } => Sent::Cordon(cordon),
            });
        }
        out
    }

    /// Moves time forward; nodes that should stay live need a `heartbeat` afterwards.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// A heartbeat from `node`.
    pub fn heartbeat(&self, node: &str) {
        self.core.hub.touch(node, None);
    }

    /// `node` reports a sliver's state.
    pub async fn report(&self, node: &str, sliver: &str, state: SliverState, message: &str) {
        self.core
            .apply_status(
                node,
                ObservedStatus {
                    sliver_id: sliver.into(),
                    state,
                    message: message.into(),
                    exit_code: None,
                },
            )
            .await
            .unwrap();
    }

    /// The newest slice of that name, ended or not.
    pub async fn slice(&self, name: &str) -> Option<Slice> {
        store::latest_slice(&mut self.core.db.conn().await.unwrap(), name)
            .await
            .unwrap()
    }

    /// A slice's slivers as stored, by index.
    pub async fn slivers(&self, slice: &str) -> Vec<Sliver> {
        let Some(s) = self.slice(slice).await else {
            return Vec::new();
        };
        store::slivers_of_slice(&mut self.core.db.conn().await.unwrap(), &s.id)
            .await
            .unwrap()
    }

    /// One sliver as stored.
    pub async fn sliver(&self, id: &str) -> Sliver {
        store::get_sliver(&mut self.core.db.conn().await.unwrap(), id)
            .await
            .unwrap()
            .expect("a stored sliver")
    }

    /// Events of a slice and its slivers, oldest first.
    pub async fn slice_events(&self, slice: &str) -> Vec<Ev> {
        let Some(s) = self.slice(slice).await else {
            return Vec::new();
        };
        self.events(EventFilter {
            slice_id: Some(s.id),
            ..Default::default()
        })
        .await
    }

    /// Events about one object ("node/n1", "sliver/x"), oldest first.
    pub async fn object_events(&self, object: &str) -> Vec<Ev> {
        self.events(EventFilter {
            object: Some(object.into()),
            ..Default::default()
        })
        .await
    }

    async fn events(&self, mut f: EventFilter) -> Vec<Ev> {
        f.limit = 1000;
        store::list_events(&mut self.core.db.conn().await.unwrap(), &f)
            .await
            .unwrap()
            .into_iter()
            .map(|e| Ev {
                actor: e.actor,
                object: e.object,
                action: e.action,
                detail: e.detail,
            })
            .collect()
    }

    /// Every event in the log.
    pub async fn all_events(&self) -> Vec<Ev> {
        self.events(EventFilter::default()).await
    }
}

pub(super) fn hello(name: &str, cpu_millis: i64, memory: i64) -> NodeHello {
    NodeHello {
        name: name.into(),
        address: "192.0.2.10".into(),
        capacity: Resources::new(cpu_millis, memory, 100 << 30),
        port_first: 20_000,
        port_last: 20_099,
        labels: BTreeMap::new(),
        agent_version: "test".into(),
    }
}

/// A slice request for `slivers` slivers of the base image with default resources.
pub(super) fn spec(name: &str, slivers: u32) -> SliceSpec {
    SliceSpec {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        placement: Placement {
            slivers,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `(action, detail)` of events, for compact assertions.
pub(super) fn actions(evs: &[Ev]) -> Vec<(&str, &str)> {
    evs.iter()
        .map(|e| (e.action.as_str(), e.detail.as_str()))
        .collect()
}
