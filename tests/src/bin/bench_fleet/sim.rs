//! Simulated nodes: each a real client of the node API on its own connection (mutual TLS
//! with the certificate it got at enrollment), doing what a node manager does on its control
//! channel: Hello with what it runs, heartbeats at the interval the Welcome asks for, a
//! RUNNING report for every sliver it is asked to run, a DELETED report for every one it is
//! asked to remove (or that the desired set no longer holds), and redialing with jittered
//! exponential backoff when the stream breaks. One task per node, asleep until its next
//! heartbeat or a message arrives.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg;
use slicebed_proto::v1::node_service_client::NodeServiceClient;
use slicebed_proto::v1::service_message::Msg as ServiceMsg;
use slicebed_tests::node::NodeCredential;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// What every node offers: far more than the benchmark's tiny slivers need.
pub const CAPACITY: pb::Resources = pb::Resources {
    cpu_millis: 256_000,
    memory_bytes: 1 << 40,
    disk_bytes: 1 << 44,
};
pub const PORTS: (u32, u32) = (30000, 30999);

/// Where nodes dial.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub ca_pem: Arc<Vec<u8>>,
}

/// Fleet-wide counters, read by the phases.
#[derive(Default)]
pub struct Counters {
    /// Bumped by the benchmark before a restart; a Welcome records the generation it saw.
    pub generation: AtomicU64,
    pub welcomes: AtomicU64,
    pub failed_sessions: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Slivers the service asked nodes to run (upserts and additions in desired sets).
    pub upserts: AtomicU64,
    /// Slivers the service asked nodes to remove.
    pub removes: AtomicU64,
    pub reports: AtomicU64,
}

/// One simulated node.
pub struct SimNode {
    pub name: String,
    identity: Identity,
    running: Mutex<HashSet<String>>,
    /// Generation of the last Welcome, 0 before the first.
    welcomed: AtomicU64,
}

impl SimNode {
    pub fn new(name: String, cred: &NodeCredential) -> Self {
        Self {
            name,
            identity: Identity::from_pem(&cred.cert_pem, &cred.key_pem),
            running: Mutex::default(),
            welcomed: AtomicU64::new(0),
        }
    }
}

/// A running fleet; `stop` ends every node's task.
pub struct Fleet {
    pub nodes: Vec<Arc<SimNode>>,
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Starts one task per node; at most `concurrency` of them open their first channel at once.
    pub fn start(nodes: Vec<Arc<SimNode>>, target: Target, concurrency: usize) -> Self {
        let counters = Arc::new(Counters {
            generation: AtomicU64::new(1),
            ..Default::default()
        });
        let (stop, _) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let tasks = nodes
            .iter()
            .map(|n| {
                tokio::spawn(run(
                    n.clone(),
                    target.clone(),
                    counters.clone(),
                    stop.subscribe(),
                    gate.clone(),
                ))
            })
            .collect();
        Self {
            nodes,
            counters,
            stop,
            tasks,
        }
    }

    /// Nodes welcomed in generation `generation` or later.
    pub fn welcomed_since(&self, generation: u64) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.welcomed.load(Relaxed) >= generation)
            .count()
    }

    /// Slivers the nodes run now.
    pub fn running(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.running.lock().unwrap().len())
            .sum()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Reconnect delays as the node manager's: from 200 ms doubling to the heartbeat interval
/// (at most 10 s), each a uniform draw below the current ceiling.
struct Backoff {
    attempt: u32,
    max: Duration,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = Duration::from_millis(200)
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.max);
        self.attempt += 1;
        rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
    }
}

async fn run(
    node: Arc<SimNode>,
    target: Target,
    c: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    gate: Arc<Semaphore>,
) {
    let mut backoff = Backoff {
        attempt: 0,
        max: Duration::from_secs(10),
    };
    loop {
        // Until its first Welcome a node waits its turn, so the fleet joins gradually.
        let permit = if node.welcomed.load(Relaxed) == 0 {
            tokio::select! {
                p = gate.clone().acquire_owned() => Some(p.expect("gate open")),
                _ = stop.changed() => return,
            }
        } else {
            None
        };
        match session(&node, &target, &c, &mut stop, &mut backoff, permit).await {
            Ok(()) => return,
            Err(_) => {
                c.failed_sessions.fetch_add(1, Relaxed);
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn connect(node: &SimNode, target: &Target) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(target.ca_pem.as_slice()))
        .domain_name("localhost")
        .identity(node.identity.clone());
    // The node manager's settings (node-manager/src/connect.rs).
    Channel::from_shared(target.url.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))
}

fn status(id: &str, state: pb::SliverState) -> pb::SliverStatus {
    pb::SliverStatus {
        sliver_id: id.into(),
        state: state as i32,
        message: String::new(),
        exit_code: None,
        container_id: String::new(),
        observed_at: Some(std::time::SystemTime::now().into()),
        restarts: 0,
    }
}

/// One control channel, until it breaks (`Err`) or the fleet stops (`Ok`).
async fn session(
    node: &SimNode,
    target: &Target,
    c: &Counters,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let ch = connect(node, target).await?;
    let mut client = NodeServiceClient::new(ch);
    let (tx, rx) = mpsc::channel::<pb::NodeMessage>(256);
    let observed = node
        .running
        .lock()
        .unwrap()
        .iter()
        .map(|id| status(id, pb::SliverState::Running))
        .collect();
    let hello = pb::Hello {
        agent_version: "bench-fleet".into(),
        capacity: Some(CAPACITY),
        port_range: Some(pb::PortRange {
            first: PORTS.0,
            last: PORTS.1,
        }),
        address: "127.0.0.1".into(),
        labels: Default::default(),
        observed,
        engine: None,
        cordoned: false,
    };
    let send = |m: Msg| {
        let tx = tx.clone();
        async move {
            tx.send(pb::NodeMessage { msg: Some(m) })
                .await
                .map_err(|_| "outgoing stream closed".to_string())
        }
    };
    send(Msg::Hello(hello)).await?;
    let mut inbound = client
        .control(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("control: {s}"))?
        .into_inner();
    let every = match timeout(Duration::from_secs(30), inbound.message()).await {
        Err(_) => return Err("no Welcome within 30 s".into()),
        Ok(Err(s)) => return Err(format!("control: {s}")),
        Ok(Ok(Some(pb::ServiceMessage {
            msg: Some(ServiceMsg::Welcome(w)),
        }))) => w
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(10))
            .max(Duration::from_secs(1)),
        Ok(Ok(other)) => return Err(format!("expected Welcome, got {other:?}")),
    };
    backoff.attempt = 0;
    backoff.max = every.min(Duration::from_secs(10));
    node.welcomed.store(c.generation.load(Relaxed), Relaxed);
    c.welcomes.fetch_add(1, Relaxed);
    drop(permit);

    let mut next_beat = Instant::now() + every;
    loop {
        tokio::select! {
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => return Err("the service closed the stream".into()),
                    Err(s) => return Err(format!("control: {s}")),
                };
                for (id, state) in answer(node, c, m) {
                    send(Msg::Status(status(&id, state))).await?;
                    c.reports.fetch_add(1, Relaxed);
                }
            }
            _ = sleep_until(next_beat) => {
                let running = node.running.lock().unwrap().len() as u32;
                send(Msg::Heartbeat(pb::Heartbeat { usage: None, running, engine: None, slivers: Vec::new() })).await?;
                c.heartbeats.fetch_add(1, Relaxed);
                next_beat += every;
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// What a node reports after acting on one message from the service.
fn answer(node: &SimNode, c: &Counters, m: pb::ServiceMessage) -> Vec<(String, pb::SliverState)> {
    let mut running = node.running.lock().unwrap();
    match m.msg {
        Some(ServiceMsg::Upsert(d)) => {
            c.upserts.fetch_add(1, Relaxed);
            running.insert(d.sliver_id.clone());
            vec![(d.sliver_id, pb::SliverState::Running)]
        }
        Some(ServiceMsg::Remove(id)) => {
            c.removes.fetch_add(1, Relaxed);
            running.remove(&id);
            vec![(id, pb::SliverState::Deleted)]
        }
        Some(ServiceMsg::Desired(set)) => {
            let want: HashSet<String> = set.slivers.into_iter().map(|d| d.sliver_id).collect();
            let gone: Vec<String> = running.difference(&want).cloned().collect();
            let new: Vec<String> = want.difference(&running).cloned().collect();
            c.upserts.fetch_add(new.len() as u64, Relaxed);
            c.removes.fetch_add(gone.len() as u64, Relaxed);
            let mut out = Vec::new();
            for id in gone {
                running.remove(&id);
                out.push((id, pb::SliverState::Deleted));
            }
            for id in new {
                running.insert(id.clone());
                out.push((id, pb::SliverState::Running));
            }
            out
        }
        // Sessions, certificates and a repeated Welcome ask nothing of this benchmark.
        _ => Vec::new(),
    }
}
