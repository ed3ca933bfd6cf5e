//! The agent: keeps a control channel to the service open (reconnecting with backoff) and,
//! while connected, reconciles the node's containers. Shutting down closes the channel and
//! leaves every container running: they are the node's state, not the agent's.

pub mod cluster;
mod probe;
mod session;
pub mod worker;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::access::Access;
use crate::backoff::Backoff;
use crate::clock::SystemClock;
use crate::desired_store::DesiredStore;
use crate::error::{Error, Result};
use crate::node_files::NodeConfig;
use crate::runtime::Runtime;

/// How long a connection attempt may take before the node goes on alone on its last desired set.
const OFFLINE_GRACE: Duration = Duration::from_secs(2);

/// Default period of the full resync.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(10);

/// What the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The enrolled node.
    pub node: NodeConfig,
    /// Its key and client certificate (renewed over the control channel).
    pub identity: crate::identity::IdentityStore,
    /// Address announced in `Hello`.
    pub address: String,
    /// Period of the full resync.
    pub resync: Duration,
    /// The state dir: where the owner's reclaim flag and the last desired set live. `None`
    /// disables reclaim and keeps the desired set in memory only.
    pub state_dir: Option<PathBuf>,
    /// Reclaim automatically while the 1-minute load average is above this.
    pub reclaim_load: Option<f64>,
    /// Where reconcile passes are counted, if anywhere.
    pub metrics: Option<crate::metrics::NodeMetrics>,
    /// Disk budget of the image cache (images fetched from the store, under
    /// `<state-dir>/images`; without a state dir pinned slivers cannot run).
    pub image_cache_budget: u64,
    /// Set when a cluster agent runs this session for one member (one Kubernetes node).
    pub member: Option<MemberLink>,
}

/// What ties a member's session to the cluster agent: which Kubernetes node it speaks for
/// (sent as `x-slicebed-member` on every call), whether that node is cordoned (as watched),
/// and where the service's cordon requests go.
#[derive(Debug, Clone)]
pub struct MemberLink {
    /// The Kubernetes node's name.
    pub kube_node: String,
    /// Its `spec.unschedulable`, as the cluster's watch last showed it.
    pub cordoned: tokio::sync::watch::Receiver<bool>,
    /// The service asks the node to be cordoned (true) or uncordoned (false).
    pub cordon: tokio::sync::mpsc::UnboundedSender<bool>,
    /// Set when the Kubernetes node was deleted: the session says Leave before it closes
    /// (and not when the agent merely stops).
    pub leaving: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// An error with its causes on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut causes = vec![e];
    while let Some(c) = causes.last().and_then(|c| c.source()) {
        causes.push(c);
    }
    one_line(&causes)
}

/// Joins an error chain with ": ", skipping a cause that repeats the one before it
/// (hyper and tonic nest "tcp connect error" twice).
pub fn one_line(causes: &[&dyn std::error::Error]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in causes {
        let text = c.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Runs until `shutdown` completes. Without `access` the node refuses researcher sessions
/// (exec, logs, copy) with a message.
pub async fn run<R: Runtime + Clone>(
    cfg: AgentConfig,
    runtime: R,
    access: Option<Access<R>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = shutdown.boxed().shared();
    let mut backoff = Backoff::default();
    let (hold_tx, hold_rx) = tokio::sync::watch::channel(None);
    let _watcher = match &cfg.state_dir {
        Some(dir) => Some(AbortOnDrop(tokio::spawn(crate::reclaim::watch(
            dir.clone(),
            cfg.reclaim_load,
            hold_tx,
        )))),
        None => None,
    };
    let mut shared = worker::Shared::with(cfg.resync, Arc::new(SystemClock), hold_rx);
    shared.metrics = cfg.metrics.clone();
    if let Some(dir) = &cfg.state_dir {
        shared = shared.kept_in(DesiredStore::new(dir, &cfg.node.node));
        let images = crate::fetch::Images::new(dir.join("images"), cfg.image_cache_budget);
        images.set_metrics(cfg.metrics.clone());
        shared.images = Some(images);
    }
    let _probe = AbortOnDrop(tokio::spawn(probe::run(
        runtime.clone(),
        shared.engine.clone(),
        shared.clock.clone(),
    )));
    loop {
        tracing::info!(server = %cfg.node.server, attempt = backoff.attempts() + 1, "connecting");
        // Until the service answers, the node goes on by itself on the last desired set
        // (leases end, reclaim pauses); the session's own worker takes over once connected.
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let session = session::run(
            &cfg,
            &runtime,
            access.as_ref(),
            &mut backoff,
            &shared,
            connected_tx,
            shutdown.clone(),
        );
        let alone = async {
            tokio::select! {
                _ = async {
                    // A service that answers at once spares the node a pass on an old set.
                    tokio::time::sleep(OFFLINE_GRACE).await;
                    worker::offline(runtime.clone(), shared.clone()).await
                } => {}
                _ = connected_rx => {}
            }
        };
        let (result, ()) = tokio::join!(session, alone);
        match result {
            Ok(()) => return Ok(()),
            Err(e @ Error::CredentialRefused(_)) => {
                tracing::error!(error = %chain(&e), "the service refused this node's identity; if an admin revoked it, enroll again with a new token (node-manager enroll --force)")
            }
            Err(e) => tracing::warn!(error = %chain(&e), "control channel down"),
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        // Cut off: keep ending leases and honouring reclaim on the last desired set.
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = worker::offline(runtime.clone(), shared.clone()) => {}
            _ = shutdown.clone() => return Ok(()),
        }
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str, #[source] Option<Box<E>>);

    #[test]
    fn one_line_skips_repeated_causes() {
        let e = E(
            "cannot connect",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E("tcp connect error", None))),
            ))),
        );
        assert_eq!(chain(&e), "cannot connect: tcp connect error");
    }
}
