//! The cluster agent: one process, one cluster certificate, one member session per node of a
//! Kubernetes cluster. It watches the cluster's Nodes (a watch, not a poll) and runs, for each,
//! the same agent a plain node runs (`agent::run`: control channel, reconciler, sessions) over
//! a `KubeRuntime` of that node, naming the node as the member on every call. A node that
//! joins gets a session; one deleted from the cluster has its session say Leave and end (the
//! service removes the member if it holds no live sliver, see docs/kubernetes.md); a cordon is
//! reported to the service, and the service's drain comes back as a cordon. It must never run two sessions for one node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::Client;
use tokio::sync::{mpsc, oneshot, watch};

use super::{AbortOnDrop, AgentConfig, MemberLink};
use crate::access::Access;
use crate::error::Result;
use crate::identity::IdentityStore;
use crate::node_files::{self, NodeConfig};
use crate::runtime::kubernetes::nodes::{self, KubeNode, NodeEvent};
use crate::runtime::kubernetes::KubeRuntime;

/// What the cluster agent runs with.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster's enrollment (`node` is the cluster's name; `capacity.disk_bytes` what a
    /// member offers when its Node says nothing of ephemeral storage).
    pub cluster: NodeConfig,
    /// The cluster certificate and key, shared by every member session.
    pub identity: IdentityStore,
    /// The state dir: each member keeps its soft state under `members/<node>`.
    pub state_dir: PathBuf,
    /// Period of each member's full resync.
    pub resync: Duration,
    /// Each member's image cache budget.
    pub image_cache_budget: u64,
}

/// The Slicebed node name of Kubernetes node `kube_node` (the service derives the same).
pub fn member_name(cluster: &str, kube_node: &str) -> String {
    format!("{cluster}-{}", kube_node.replace('.', "-"))
}

/// One member session.
struct Member {
    shown: KubeNode,
    leaving: Arc<AtomicBool>,
    cordoned: watch::Sender<bool>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _cordoner: AbortOnDrop,
}

impl Member {
    /// Ends the session after telling the service the node left the cluster.
    async fn leave(self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.end().await;
    }

    /// Ends the session (the control channel closes cleanly) and waits for it.
    async fn end(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Labels the service accepts as a member's seed: Kubernetes keys longer than 63 characters
/// or values with `=`/`,` are left out rather than refusing the node; at most 64.
fn seed_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let bad = |c: char| c.is_control() || c == '=' || c == ',';
    labels
        .iter()
        .filter(|(k, v)| {
            !k.is_empty() && k.len() <= 63 && v.len() <= 255 && !k.contains(bad) && !v.contains(bad)
        })
        .take(64)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn start(
    cfg: &ClusterConfig,
    client: &Client,
    k: KubeNode,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) -> Result<Member> {
    let name = member_name(&cfg.cluster.node, &k.name);
    let address = k
        .facts
        .address
        .map_or_else(|| cfg.cluster.address.clone(), |a| a.to_string());
    let mut node = cfg.cluster.clone();
    node.node = name.clone();
    node.cluster = false;
    node.capacity.cpu_millis = k.facts.allocatable.cpu_millis;
    node.capacity.memory_bytes = k.facts.allocatable.memory_bytes;
    if k.facts.allocatable.disk_bytes > 0 {
        node.capacity.disk_bytes = k.facts.allocatable.disk_bytes;
    }
    node.labels = seed_labels(&k.labels);
    node.address = address.clone();
    let dir = cfg.state_dir.join("members").join(&k.name);
    node_files::create_dir(&dir)?;
    let runtime = KubeRuntime::new(
        client.clone(),
        name.clone(),
        k.name.clone(),
        k.facts.address,
    );
    let (cordoned_tx, cordoned_rx) = watch::channel(k.facts.unschedulable);
    let (cordon_tx, mut cordon_rx) = mpsc::unbounded_channel::<bool>();
    let leaving = Arc::new(AtomicBool::new(false));
    let kube_node = k.name.clone();
    let cordon_client = client.clone();
    // The service's drain and enable, as a cordon of the Kubernetes node.
    let cordoner = AbortOnDrop(tokio::spawn(async move {
        while let Some(cordon) = cordon_rx.recv().await {
            match nodes::set_cordon(&cordon_client, &kube_node, cordon).await {
                Ok(()) => {
                    tracing::info!(node = %kube_node, cordon, "Kubernetes node cordon set as the service asked")
                }
                Err(e) => {
                    tracing::warn!(node = %kube_node, cordon, error = %e, "cannot set the Kubernetes node's cordon (does the agent's ClusterRole allow patching nodes?)")
                }
            }
        }
    }));
    let acfg = AgentConfig {
        address,
        node,
        identity: cfg.identity.clone(),
        resync: cfg.resync,
        state_dir: Some(dir),
        reclaim_load: None,
        metrics: None,
        image_cache_budget: cfg.image_cache_budget,
        member: Some(MemberLink {
            kube_node: k.name.clone(),
            cordoned: cordoned_rx,
            cordon: cordon_tx,
            leaving: leaving.clone(),
        }),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let access = Access::from_runtime(&runtime);
    let task = tokio::spawn(async move {
        let end = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stopped => {}
            }
        };
        if let Err(e) = super::run(acfg, runtime, Some(access), end).await {
            tracing::error!(member = %name, error = %super::chain(&e), "member session failed");
        }
    });
    tracing::info!(node = %k.name, cordoned = k.facts.unschedulable, "cluster node joined: member session started");
    Ok(Member {
        shown: k,
        leaving,
        cordoned: cordoned_tx,
        stop,
        task,
        _cordoner: cordoner,
    })
}

/// Runs the cluster agent until `shutdown` completes.
pub async fn run(
    cfg: ClusterConfig,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = shutdown.boxed().shared();
    let mut members: HashMap<String, Member> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let events = nodes::watch(client.clone());
    futures::pin_mut!(events);
    loop {
        let e = tokio::select! {
            _ = shutdown.clone() => break,
            e = events.next() => e,
        };
        let Some(e) = e else { break };
        match e {
            NodeEvent::Relisting => listing = Some(HashSet::new()),
            NodeEvent::Seen(k) => {
                if let Some(l) = &mut listing {
                    l.insert(k.name.clone());
                }
                let cordoned = k.facts.unschedulable;
                match members.get(&k.name) {
                    // Capacity and address travel in Hello: a change needs a new session.
                    Some(m) if same_offer(&m.shown, &k) => {
                        m.cordoned
                            .send_if_modified(|c| std::mem::replace(c, cordoned) != cordoned);
                        continue;
                    }
                    Some(_) => {
                        tracing::info!(node = %k.name, "cluster node changed capacity or address: new member session");
                        if let Some(old) = members.remove(&k.name) {
                            old.end().await;
                        }
                    }
                    None => {}
                }
                let m = start(&cfg, &client, k, shutdown.clone())?;
                members.insert(m.shown.name.clone(), m);
            }
            NodeEvent::Listed => {
                if let Some(seen) = listing.take() {
                    let gone: Vec<String> = members
                        .keys()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for n in gone {
                        leave(&mut members, &n).await;
                    }
                }
            }
            NodeEvent::Gone(n) => leave(&mut members, &n).await,
        }
    }
    for (_, m) in members.drain() {
        m.end().await;
    }
    Ok(())
}

/// Whether a member's session still says what the Node offers (capacity and address).
fn same_offer(a: &KubeNode, b: &KubeNode) -> bool {
    a.facts.allocatable == b.facts.allocatable && a.facts.address == b.facts.address
}

async fn leave(members: &mut HashMap<String, Member>, node: &str) {
    if let Some(m) = members.remove(node) {
        tracing::info!(node, "cluster node deleted: the member leaves");
        m.leave().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_after_their_cluster_and_node() {
        assert_eq!(member_name("lab", "worker-1"), "lab-worker-1");
        assert_eq!(
            member_name("lab", "ip-10-0-0-1.ec2.internal"),
            "lab-ip-10-0-0-1-ec2-internal"
        );
    }

    #[test]
    fn seed_labels_leave_out_what_the_service_refuses() {
        let long = "x".repeat(64);
        let l = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            (long, "v".to_string()),
            ("k".to_string(), "a=b".to_string()),
        ]);
        let s = seed_labels(&l);
        assert_eq!(s, BTreeMap::from([("zone".to_string(), "a".to_string())]));
    }
}
