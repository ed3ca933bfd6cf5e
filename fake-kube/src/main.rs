//! `slicebed-fake-kube`: runs the fake Kubernetes API server until interrupted, writing a
//! kubeconfig that reaches it. For tests and `slicectl dev up --kube-site`; never a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use slicebed_fake_kube::{parse_label, Config, FakeKube, NodeConfig};

#[derive(Parser)]
#[command(version, about = "A fake Kubernetes API server for Slicebed's tests")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig that reaches this server.
    #[arg(long)]
    kubeconfig_out: PathBuf,
    /// How many nodes to register (fake-node-1 …).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// A label every node gets (KEY=VALUE, repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// CPU and memory each node offers (Kubernetes quantities).
    #[arg(long, default_value = "4")]
    node_cpu: String,
    #[arg(long, default_value = "8Gi")]
    node_memory: String,
    /// Bearer token clients must present (random when absent).
    #[arg(long, env = "SLICEBED_FAKE_KUBE_TOKEN")]
    token: Option<String>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// Serve pods/exec with `docker exec` in a container started from the Pod's image on its
    /// first exec (needs the Docker engine and the image locally).
    #[arg(long)]
    docker_exec: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let a = Args::parse();
    let mut config = Config::with_nodes(0);
    config.listen = a.listen;
    config.tls = !a.plain_http;
    config.docker_exec = a.docker_exec;
    config.token = a.token;
    config.nodes = (1..=a.nodes)
        .map(|i| NodeConfig {
            cpu: a.node_cpu.clone(),
            memory: a.node_memory.clone(),
            labels: a.node_labels.iter().cloned().collect(),
            ..NodeConfig::new(&format!("fake-node-{i}"))
        })
        .collect();
    let fake = FakeKube::start(config).await?;
    fake.write_kubeconfig(&a.kubeconfig_out)?;
    println!(
        "slicebed-fake-kube listening on {} (kubeconfig: {})",
        fake.url(),
        a.kubeconfig_out.display()
    );
    // Stop on SIGINT or SIGTERM, so the fake is dropped and removes its exec containers.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    drop(fake);
    Ok(())
}
