//! `node-manager cleanup`: removes every container and network labelled with this node, and
//! the desired set the node kept (so a later `run` does not bring them back before the
//! service says so). Used by `slicectl dev down`; other nodes sharing the engine are left alone.

use std::path::PathBuf;

use anyhow::Context;
use node_manager::node_files;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory written by `enroll` (names the node).
    #[arg(long)]
    state_dir: PathBuf,
    /// Docker engine (unix:///var/run/docker.sock, tcp://HOST:PORT); default DOCKER_HOST or the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config =
        node_files::load_config(&a.state_dir)?.ok_or_else(|| node_manager::Error::NotEnrolled {
            dir: a.state_dir.clone(),
        })?;
    let rt = DockerRuntime::connect(a.docker_host.as_deref(), config.node.clone()).await?;
    let containers = rt.list().await.context("listing containers")?;
    for c in &containers {
        rt.remove(&c.container_id).await?;
    }
    let networks = rt.list_networks().await.context("listing networks")?;
    for slice in &networks {
        rt.remove_network(slice).await?;
    }
    let kept = a.state_dir.join(node_manager::desired_store::DESIRED_FILE);
    match std::fs::remove_file(&kept) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", kept.display())),
    }
    println!(
        "node {}: removed {} container(s) and {} network(s)",
        config.node,
        containers.len(),
        networks.len()
    );
    Ok(())
}
