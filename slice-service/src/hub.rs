//! In-memory registry of node control channels and node liveness: soft state.
//!
//! Nothing here is written per heartbeat; losing it all (a service restart) only means nodes
//! look unreachable until they reconnect, which they do on their own. The database stays the
//! durable record of what should run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::{SharedClock, SystemClock};
use crate::model::{Slice, Sliver};
use slicebed_units::Resources;

/// What the service tells a connected node.
#[derive(Debug, Clone)]
pub enum NodeCommand {
    /// Run (or update) this sliver of this slice.
    Upsert(Box<(Slice, Sliver)>),
    /// Remove this sliver by id.
    Remove(String),
    /// Open a session stream for a researcher's exec, logs or copy.
    OpenSession(Box<SessionRequest>),
    /// The node's administrative state changed: `cordon` while it takes no new slivers (a
    /// cluster agent cordons the member's Kubernetes node).
    Admin { cordon: bool },
}

/// What a session is for; the node opens `NodeService/Session` to serve it.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub session_id: String,
    pub sliver_id: String,
    pub kind: SessionKind,
    pub idle_timeout: std::time::Duration,
}

/// Kinds of session.
#[derive(Debug, Clone)]
pub enum SessionKind {
    Exec {
        command: Vec<String>,
        tty: bool,
        cols: u32,
        rows: u32,
        env: Vec<(String, String)>,
        stdin: bool,
    },
    Logs {
        follow: bool,
        tail: u32,
    },
    CopyTo(String),
    CopyFrom(String),
}

#[derive(Debug)]
struct Entry {
    last_seen: Instant,
    conn: Option<(u64, mpsc::Sender<NodeCommand>)>,
    usage: Resources,
    /// Whether the "unreachable" transition has been recorded since the last contact.
    marked_unreachable: bool,
    /// Set while the node reports that its container engine does not answer.
    engine_down: Option<EngineDown>,
    /// Cut off (identity revoked): messages still in flight on its old stream do not count.
    kicked: bool,
}

/// A node's container engine does not answer, as the node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDown {
    /// The node's words.
    pub message: String,
    /// When the node first saw it (milliseconds since the epoch, the node's clock).
    pub since_ms: i64,
    /// When the service learnt it.
    pub noticed: Instant,
}

/// A change of a node's engine health, to be recorded as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChange {
    /// It stopped answering.
    Lost { message: String },
    /// It answers again after being away this long (as the service saw it).
    Back { away: Duration },
}

/// Connected nodes and when each was last heard from.
#[derive(Debug)]
pub struct Hub {
    ttl: Duration,
    clock: SharedClock,
    next_id: AtomicU64,
    nodes: Mutex<HashMap<String, Entry>>,
    /// Names of nodes cut off (`kick`), for their session streams to end too.
    kicks: tokio::sync::broadcast::Sender<String>,
}

impl Hub {
    /// A hub that deems a node unreachable `ttl` after its last message.
    pub fn new(ttl: Duration) -> Self {
        Self::with_clock(ttl, std::sync::Arc::new(SystemClock))
    }

    /// The same, reading time from `clock`.
    pub fn with_clock(ttl: Duration, clock: SharedClock) -> Self {
        Self {
            ttl,
            clock,
            next_id: AtomicU64::new(1),
            nodes: Mutex::new(HashMap::new()),
            kicks: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// How long ago `t` was, by the hub's clock.
    fn since(&self, t: Instant) -> Duration {
        self.clock.instant().saturating_duration_since(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new control channel, replacing any older one of the node; returns its id.
    pub fn connect(&self, node: &str, tx: mpsc::Sender<NodeCommand>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut m = self.lock();
        let e = m.entry(node.to_string()).or_insert(Entry {
            last_seen: self.clock.instant(),
            conn: None,
            usage: Resources::default(),
            marked_unreachable: false,
            engine_down: None,
            kicked: false,
        });
        e.last_seen = self.clock.instant();
        e.conn = Some((id, tx));
        e.marked_unreachable = false;
        e.kicked = false;
        id
    }

    /// Registers a control channel unless the node already has a live one (heard from within
    /// the TTL): a second stream for a connected node is refused, never silently swapped in.
    /// A stale channel (silent past the TTL) is replaced, so a node that lost its connection
    /// without the service noticing gets back in.
    pub fn connect_exclusive(&self, node: &str, tx: mpsc::Sender<NodeCommand>) -> Option<u64> {
        {
            let m = self.lock();
            if m.get(node).is_some_and(|e| {
                e.conn.as_ref().is_some_and(|(_, tx)| !tx.is_closed())
                    && self.since(e.last_seen) < self.ttl
            }) {
                return None;
            }
        }
        Some(self.connect(node, tx))
    }

    /// Drops the node's control channel, which ends its stream, and deems it unreachable at
    /// once (its identity was revoked: nothing it says counts until it enrolls again).
    pub fn kick(&self, node: &str) {
        let now = self.clock.instant();
        if let Some(e) = self.lock().get_mut(node) {
            e.conn = None;
            e.kicked = true;
            e.last_seen = now.checked_sub(self.ttl).unwrap_or(e.last_seen);
        }
        let _ = self.kicks.send(node.to_string());
    }

    /// Resolves when `node` is cut off (`kick`) from now on: its session streams end then.
    pub fn cut_off(&self, node: &str) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.kicks.subscribe();
        let node = node.to_string();
        async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(n) if n == node => return,
                    // Missed some names: this one may be among them, so end to be safe.
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                    Ok(_) => {}
                }
            }
        }
    }

    /// Forgets a control channel if it is still the node's current one.
    pub fn disconnect(&self, node: &str, id: u64) {
        if let Some(e) = self.lock().get_mut(node) {
            if e.conn.as_ref().is_some_and(|(cid, _)| *cid == id) {
                e.conn = None;
            }
        }
    }

    /// Records a heartbeat (or any message) from a node.
    pub fn touch(&self, node: &str, usage: Option<Resources>) {
        if let Some(e) = self.lock().get_mut(node).filter(|e| !e.kicked) {
            e.last_seen = self.clock.instant();
            e.marked_unreachable = false;
            if let Some(u) = usage {
                e.usage = u;
            }
        }
    }

    /// Records the engine health a node reported (`None`: it answers); returns the change, if
    /// any, so that the caller records it once.
    pub fn set_engine(&self, node: &str, down: Option<(String, i64)>) -> Option<EngineChange> {
        let mut m = self.lock();
        let e = m.get_mut(node)?;
        match (&e.engine_down, down) {
            (None, Some((message, since_ms))) => {
                e.engine_down = Some(EngineDown {
                    message: message.clone(),
                    since_ms,
                    noticed: self.clock.instant(),
                });
                Some(EngineChange::Lost { message })
            }
            (Some(d), None) => {
                let away = self.since(d.noticed);
                e.engine_down = None;
                Some(EngineChange::Back { away })
            }
            _ => None,
        }
    }

    /// The node's engine outage, while it is connected and reports one.
    pub fn engine_down(&self, node: &str) -> Option<EngineDown> {
        self.lock()
            .get(node)
            .filter(|e| self.since(e.last_seen) < self.ttl)
            .and_then(|e| e.engine_down.clone())
    }

    /// Whether the node was heard from within the TTL.
    pub fn is_live(&self, node: &str) -> bool {
        self.lock()
            .get(node)
            .is_some_and(|e| self.since(e.last_seen) < self.ttl)
    }

    /// How long since the node was last heard from, if it was heard from since start-up.
    pub fn silent_for(&self, node: &str) -> Option<Duration> {
        self.lock().get(node).map(|e| self.since(e.last_seen))
    }

    /// Whether the node has an open control channel right now.
    pub fn is_connected(&self, node: &str) -> bool {
        self.lock()
            .get(node)
            .is_some_and(|e| e.conn.is_some() && self.since(e.last_seen) < self.ttl)
    }

    /// Whether the node has ever connected since this service started.
    pub fn seen(&self, node: &str) -> bool {
        self.lock().contains_key(node)
    }

    /// Last reported usage.
    pub fn usage(&self, node: &str) -> Resources {
        self.lock().get(node).map(|e| e.usage).unwrap_or_default()
    }

    /// Sends a command to a connected node; a disconnected node gets the full set on reconnect.
    pub fn send(&self, node: &str, cmd: NodeCommand) {
        let tx = self
            .lock()
            .get(node)
            .and_then(|e| e.conn.as_ref().map(|(_, tx)| tx.clone()));
        if let Some(tx) = tx {
            if tx.try_send(cmd).is_err() {
                // The channel is full or closed: the node is stuck or gone. Dropping it makes the
                // node reconnect and receive the full desired set, which is always correct.
                tracing::warn!(node, "control channel congested; forcing a resync");
                if let Some(e) = self.lock().get_mut(node) {
                    e.conn = None;
                }
            }
        }
    }

    /// Nodes that passed their TTL since last checked; each is returned once per silence.
    pub fn newly_unreachable(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, e) in self.lock().iter_mut() {
            if !e.marked_unreachable && self.since(e.last_seen) >= self.ttl {
                e.marked_unreachable = true;
                e.conn = None;
                out.push(name.clone());
            }
        }
        out
    }

    /// Drops everything about a node (deleted).
    pub fn forget(&self, node: &str) {
        self.lock().remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_expires_and_reports_once() {
        let clock = crate::clock::ManualClock::new();
        let hub = Hub::with_clock(Duration::from_secs(30), clock.clone());
        let (tx, _rx) = mpsc::channel(4);
        let id = hub.connect("n1", tx);
        assert!(hub.is_live("n1"));
        clock.advance(Duration::from_secs(29));
        assert!(hub.is_live("n1"));
        clock.advance(Duration::from_secs(1));
        assert!(!hub.is_live("n1"));
        assert_eq!(hub.newly_unreachable(), vec!["n1".to_string()]);
        assert!(hub.newly_unreachable().is_empty());
        hub.touch("n1", None);
        assert!(hub.is_live("n1"));
        hub.disconnect("n1", id);
        assert!(hub.seen("n1"));
    }

    #[test]
    fn stale_disconnect_keeps_new_channel() {
        let hub = Hub::new(Duration::from_secs(5));
        let (tx1, _r1) = mpsc::channel(4);
        let (tx2, mut r2) = mpsc::channel(4);
        let old = hub.connect("n1", tx1);
        hub.connect("n1", tx2);
        hub.disconnect("n1", old);
        hub.send("n1", NodeCommand::Remove("x".into()));
        assert!(matches!(r2.try_recv(), Ok(NodeCommand::Remove(id)) if id == "x"));
    }

    #[test]
    fn a_second_live_channel_is_refused_and_a_stale_one_replaced() {
        let clock = crate::clock::ManualClock::new();
        let hub = Hub::with_clock(Duration::from_secs(30), clock.clone());
        let (tx1, mut r1) = mpsc::channel(4);
        let (tx2, _r2) = mpsc::channel(4);
        let first = hub.connect_exclusive("n1", tx1).unwrap();
        assert!(hub.connect_exclusive("n1", tx2.clone()).is_none());
        clock.advance(Duration::from_secs(31));
        let second = hub.connect_exclusive("n1", tx2).unwrap();
        assert_ne!(first, second);
        // The replaced channel's sender is gone: its stream ends.
        assert!(matches!(
            r1.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        hub.kick("n1");
        assert!(!hub.is_connected("n1") && !hub.is_live("n1"));
        // A heartbeat still in flight on the old stream does not bring it back.
        hub.touch("n1", None);
        assert!(!hub.is_live("n1"));
    }

    #[tokio::test]
    async fn cutting_a_node_off_ends_what_waits_on_it_and_only_that() {
        let hub = Hub::new(Duration::from_secs(30));
        let n1 = hub.cut_off("n1");
        let mut n2 = Box::pin(hub.cut_off("n2"));
        hub.kick("n1");
        n1.await;
        assert!(futures::poll!(&mut n2).is_pending());
    }

    #[test]
    fn engine_changes_are_reported_once_each_way() {
        let hub = Hub::new(Duration::from_secs(60));
        let (tx, _rx) = mpsc::channel(4);
        assert_eq!(hub.set_engine("n1", Some(("refused".into(), 5))), None);
        hub.connect("n1", tx);
        assert_eq!(hub.set_engine("n1", None), None);
        assert_eq!(
            hub.set_engine("n1", Some(("refused".into(), 5))),
            Some(EngineChange::Lost {
                message: "refused".into()
            })
        );
        assert_eq!(
            hub.set_engine("n1", Some(("still refused".into(), 6))),
            None
        );
        let down = hub.engine_down("n1").unwrap();
        assert_eq!((down.message.as_str(), down.since_ms), ("refused", 5));
        assert!(matches!(
            hub.set_engine("n1", None),
            Some(EngineChange::Back { .. })
        ));
        assert!(hub.engine_down("n1").is_none());
    }
}
