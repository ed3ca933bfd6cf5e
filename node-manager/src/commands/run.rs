//! `node-manager run`.

use std::path::PathBuf;

use anyhow::Context;
use node_manager::access::Access;
use node_manager::agent::{self, AgentConfig, DEFAULT_RESYNC};
use node_manager::image::{self, Outcome, DEFAULT_TAG};
use node_manager::node_files;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::subnets::{Pool, DEFAULT_POOL};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory written by `enroll`.
    #[arg(long)]
    state_dir: PathBuf,
    /// Docker engine (unix:///var/run/docker.sock, tcp://HOST:PORT); default DOCKER_HOST or the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
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
    let (node, credential) =
        node_files::load(&a.state_dir).context("cannot load the enrollment")?;
    let runtime = DockerRuntime::connect(a.docker_host.as_deref(), node.node.clone())
        .await?
        .with_network_pool(a.network_pool.0);
    match image::ensure(&runtime, DEFAULT_TAG, false).await {
        Ok(Outcome::Imported) => tracing::info!(image = DEFAULT_TAG, "imported the base image"),
        Ok(Outcome::AlreadyPresent) => tracing::debug!(image = DEFAULT_TAG, "base image present"),
        Err(e) => {
            tracing::warn!(image = DEFAULT_TAG, error = %e, "base image unavailable; slivers using it will fail")
        }
    }
    let cfg = AgentConfig {
        address: a.address.unwrap_or_else(|| node.address.clone()),
        node,
        credential,
        resync: DEFAULT_RESYNC,
        state_dir: Some(a.state_dir.clone()),
        reclaim_load: a.reclaim_load,
    };
    tracing::info!(node = %cfg.node.node, version = node_manager::AGENT_VERSION, "node manager starting");
    let access = Access::from_runtime(&runtime);
    agent::run(cfg, runtime, Some(access), shutdown_signal()).await?;
    Ok(())
}
