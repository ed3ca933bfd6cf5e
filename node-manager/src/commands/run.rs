//! `node-manager run`.

use std::path::PathBuf;

use anyhow::Context;
use node_manager::access::Access;
use node_manager::agent::{self, AgentConfig, DEFAULT_RESYNC};
use node_manager::image::{self, Outcome, DEFAULT_TAG};
use node_manager::node_files;
use node_manager::runtime::docker::{DockerRuntime, EngineTls};
use node_manager::runtime::kubernetes::KubeRuntime;
use node_manager::runtime::Runtime;
use node_manager::subnets::{Pool, DEFAULT_POOL};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory written by `enroll`.
    #[arg(long)]
    state_dir: PathBuf,
    /// Docker engine (unix:///var/run/docker.sock, tcp://HOST:PORT); default DOCKER_HOST or the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    #[command(flatten)]
    engine: EngineFlags,
    /// Address announced to the service (overrides the enrolled one).
    #[arg(long)]
    address: Option<String>,
    /// Reclaim the node for its owner (pause every sliver) while the host's 1-minute load
    /// average is above this; released when it falls below 80% of it.
    #[arg(long, value_name = "LOAD", value_parser = positive_load)]
    reclaim_load: Option<f64>,
    /// Where slice networks take their /24 subnets (4096 of them in the default), skipping any
    /// the engine or the host already uses; `engine` leaves it to the engine's own address
    /// pools (about 31 networks per engine unless its daemon.json says otherwise).
    #[arg(long, env = "SLICEBED_NETWORK_POOL", value_name = "CIDR|engine", default_value = DEFAULT_POOL, value_parser = network_pool)]
    network_pool: NetworkPool,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP, not authenticated) on this address;
    /// off by default. Port 0 picks a free port (written to <state-dir>/metrics.addr).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Disk budget of the node's image cache (images fetched from the store, e.g. 10Gi):
    /// past it, the least recently used images no desired sliver needs are removed.
    #[arg(long, value_name = "SIZE", default_value = "10Gi", value_parser = cache_budget)]
    image_cache_budget: u64,
    #[command(flatten)]
    kube: KubeFlags,
}

/// Which backend runs the slivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// The Docker engine (--docker-host).
    Docker,
    /// One node of a Kubernetes cluster (--kubeconfig, --kube-node): slivers run as Pods.
    Kubernetes,
}

/// The Kubernetes backend: which cluster, and which of its nodes this agent speaks for.
#[derive(Debug, clap::Args)]
struct KubeFlags {
    /// Backend that runs the slivers.
    #[arg(long, value_enum, default_value = "docker")]
    runtime: Backend,
    /// Kubeconfig reaching the cluster (--runtime kubernetes); without it, the Pod's own
    /// service account when the agent runs in the cluster.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The one Kubernetes node this agent speaks for (--runtime kubernetes, with a node's
    /// enrollment): its allocatable cpu and memory become the node's capacity, its InternalIP
    /// the address of published ports. Without it, a cluster's enrollment (`enroll --cluster`)
    /// runs the cluster agent, which speaks for every node of the cluster.
    #[arg(long, value_name = "NAME")]
    kube_node: Option<String>,
}

/// How the node manager reaches and uses the engine, beyond its address.
#[derive(Debug, clap::Args)]
struct EngineFlags {
    /// CA certificate the engine's TLS certificate must chain to (with --docker-tls-cert and
    /// --docker-tls-key; without all three, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as for docker).
    #[arg(long, value_name = "PEM", requires_all = ["docker_tls_cert", "docker_tls_key"])]
    docker_tls_ca: Option<PathBuf>,
    /// Client certificate presented to the engine.
    #[arg(long, value_name = "PEM", requires_all = ["docker_tls_ca", "docker_tls_key"])]
    docker_tls_cert: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long, value_name = "PEM", requires_all = ["docker_tls_ca", "docker_tls_cert"])]
    docker_tls_key: Option<PathBuf>,
    /// Run slivers even when slices cannot be isolated from the host and from each other
    /// (no iptables, not root, an engine on another host); by default they are refused,
    /// failing with the reason. For development testbeds.
    #[arg(long, env = "SLICEBED_ALLOW_UNISOLATED")]
    allow_unisolated: bool,
}

impl EngineFlags {
    fn tls(&self) -> Option<EngineTls> {
        Some(EngineTls {
            ca: self.docker_tls_ca.clone()?,
            cert: self.docker_tls_cert.clone()?,
            key: self.docker_tls_key.clone()?,
        })
    }
}

/// `--network-pool`: a pool, or the engine's own pools.
#[derive(Debug, Clone, Copy)]
struct NetworkPool(Option<Pool>);

fn network_pool(s: &str) -> Result<NetworkPool, String> {
    if s == "engine" {
        return Ok(NetworkPool(None));
    }
    s.parse().map(|p| NetworkPool(Some(p)))
}

fn cache_budget(s: &str) -> Result<u64, String> {
    slicebed_units::parse_size(s)
        .ok()
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 10Gi, 500Mi)"))
}

fn positive_load(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive load average (e.g. 3.5)")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let (mut node, identity) =
        node_files::load(&a.state_dir).context("cannot load the enrollment")?;
    if node.cluster {
        return run_cluster(a, node, identity).await;
    }
    if a.kube.runtime == Backend::Kubernetes {
        let Some(kube_node) = a.kube.kube_node.clone() else {
            anyhow::bail!(
                "--runtime kubernetes needs --kube-node NAME for node {}'s enrollment; to speak \
                 for the whole cluster, enroll a cluster (node-manager enroll --cluster)",
                node.node
            );
        };
        let (runtime, facts) =
            KubeRuntime::connect(a.kube.kubeconfig.as_deref(), node.node.clone(), kube_node)
                .await?;
        // The cluster's figures, not the enrollment's: what the kubelet will actually admit.
        node.capacity.cpu_millis = facts.allocatable.cpu_millis;
        node.capacity.memory_bytes = facts.allocatable.memory_bytes;
        let address = a
            .address
            .clone()
            .or(facts.address.map(|ip| ip.to_string()))
            .unwrap_or_else(|| node.address.clone());
        return serve(a, node, identity, address, runtime).await;
    }
    let address = a.address.clone().unwrap_or_else(|| node.address.clone());
    let tls = a.engine.tls();
    let runtime =
        DockerRuntime::connect_with(a.docker_host.as_deref(), tls.as_ref(), node.node.clone())
            .await?
            .with_network_pool(a.network_pool.0)
            .with_publish_address(&address)
            .allow_unisolated(a.engine.allow_unisolated);
    match runtime.isolation().await {
        Ok(()) => tracing::info!("slices are isolated by per-slice firewall rules"),
        Err(why) if a.engine.allow_unisolated => {
            tracing::warn!(reason = %why, "slices are NOT isolated from the host or from each other (--allow-unisolated)")
        }
        Err(why) => {
            tracing::error!(reason = %why, "slices cannot be isolated: slivers are refused until they can (or run with --allow-unisolated)")
        }
    }
    match image::ensure(&runtime, DEFAULT_TAG, false).await {
        Ok(Outcome::Imported) => tracing::info!(image = DEFAULT_TAG, "imported the base image"),
        Ok(Outcome::AlreadyPresent) => tracing::debug!(image = DEFAULT_TAG, "base image present"),
        Err(e) => {
            tracing::warn!(image = DEFAULT_TAG, error = %e, "base image unavailable; slivers using it will fail")
        }
    }
    serve(a, node, identity, address, runtime).await
}

/// Runs the cluster agent (one member session per Kubernetes node) until a signal.
async fn run_cluster(
    a: Args,
    cluster: node_files::NodeConfig,
    identity: node_manager::identity::NodeIdentity,
) -> anyhow::Result<()> {
    if a.kube.runtime != Backend::Kubernetes {
        anyhow::bail!(
            "{} is a cluster's enrollment: run it with --runtime kubernetes",
            a.state_dir.display()
        );
    }
    if a.kube.kube_node.is_some() {
        anyhow::bail!(
            "--kube-node: cluster {} speaks for every node of its cluster; --kube-node is for \
             a node's enrollment",
            cluster.node
        );
    }
    if a.metrics_listen.is_some() || a.reclaim_load.is_some() {
        anyhow::bail!("--metrics-listen and --reclaim-load are not available for a cluster agent");
    }
    if a.address.is_some() {
        anyhow::bail!(
            "--address: each node of cluster {} announces its own InternalIP (else ExternalIP)",
            cluster.node
        );
    }
    let client =
        node_manager::runtime::kubernetes::client::client(a.kube.kubeconfig.as_deref()).await?;
    tracing::info!(cluster = %cluster.node, version = node_manager::AGENT_VERSION, "cluster agent starting");
    let cfg = agent::cluster::ClusterConfig {
        identity: node_manager::identity::IdentityStore::new(identity, Some(&a.state_dir)),
        cluster,
        state_dir: a.state_dir.clone(),
        resync: DEFAULT_RESYNC,
        image_cache_budget: a.image_cache_budget,
    };
    agent::cluster::run(cfg, client, shutdown_signal()).await?;
    Ok(())
}

/// Runs the agent over `runtime` until a signal.
async fn serve<R: Runtime + Clone>(
    a: Args,
    node: node_files::NodeConfig,
    identity: node_manager::identity::NodeIdentity,
    address: String,
    runtime: R,
) -> anyhow::Result<()> {
    // Engine calls are timed by a wrapper; passes by the agent (node_manager::metrics).
    let metrics = node_manager::metrics::NodeMetrics::new(&node.node);
    let _metrics_task = match &a.metrics_listen {
        Some(at) => Some(AbortOnDrop(
            node_manager::metrics::start(at, &a.state_dir, metrics.clone()).await?,
        )),
        None => None,
    };
    let runtime = node_manager::metrics::Instrumented::new(runtime, metrics.clone());
    let cfg = AgentConfig {
        address,
        node,
        identity: node_manager::identity::IdentityStore::new(identity, Some(&a.state_dir)),
        resync: DEFAULT_RESYNC,
        state_dir: Some(a.state_dir.clone()),
        reclaim_load: a.reclaim_load,
        metrics: Some(metrics),
        image_cache_budget: a.image_cache_budget,
        member: None,
    };
    tracing::info!(node = %cfg.node.node, version = node_manager::AGENT_VERSION, "node manager starting");
    let access = Access::from_runtime(&runtime);
    agent::run(cfg, runtime, Some(access), shutdown_signal()).await?;
    Ok(())
}

/// Aborts the metrics listener when `run` returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineFlags,
    }

    #[test]
    fn docker_tls_flags_come_as_a_set() {
        let c = Cli::try_parse_from([
            "run",
            "--docker-tls-ca",
            "/c/ca.pem",
            "--docker-tls-cert",
            "/c/cert.pem",
            "--docker-tls-key",
            "/c/key.pem",
        ])
        .unwrap();
        assert_eq!(
            c.engine.tls(),
            Some(EngineTls {
                ca: "/c/ca.pem".into(),
                cert: "/c/cert.pem".into(),
                key: "/c/key.pem".into(),
            })
        );
        let e = Cli::try_parse_from(["run", "--docker-tls-ca", "/c/ca.pem"])
            .err()
            .expect("a CA alone is refused");
        assert!(e.to_string().contains("--docker-tls-cert"), "{e}");
        assert_eq!(Cli::try_parse_from(["run"]).unwrap().engine.tls(), None);
    }

    #[derive(clap::Parser)]
    struct KubeCli {
        #[command(flatten)]
        kube: KubeFlags,
    }

    #[test]
    fn kubernetes_takes_a_node_or_the_whole_cluster() {
        let c = KubeCli::try_parse_from(["run", "--runtime", "kubernetes"]).unwrap();
        assert_eq!(c.kube.kube_node, None, "a cluster agent names no node");
        let c = KubeCli::try_parse_from(["run"]).unwrap();
        assert_eq!(c.kube.runtime, Backend::Docker);
        let c = KubeCli::try_parse_from([
            "run",
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            "/k",
            "--kube-node",
            "n1",
        ])
        .unwrap();
        assert_eq!(c.kube.kube_node.as_deref(), Some("n1"));
    }
}
