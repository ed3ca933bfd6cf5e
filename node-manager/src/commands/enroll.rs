//! `node-manager enroll`.

use std::path::PathBuf;
use std::time::Duration;

use node_manager::domain::{PortRange, Resources};
use node_manager::enroll::{enroll, EnrollParams};
use node_manager::quantity::{labels_from, parse_label, parse_port_range};
use node_manager::{host, runtime};
use slicebed_units::{parse_cpu, parse_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Slice service URL, e.g. http://127.0.0.1:7443 or https://slicebed.example.org.
    #[arg(long, env = "SLICEBED_SERVER")]
    server: String,
    /// One-time enrollment token from `slicectl node token`; `-` reads it from the first line
    /// of standard input. Prefer `-` or the environment: a token on a command line is visible
    /// in `ps` and shell history.
    #[arg(long, env = "SLICEBED_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// Node name (a DNS label, unique in the testbed).
    #[arg(long)]
    name: String,
    /// Directory for node.json, the node's key (node.key, 0600; it never leaves the node) and
    /// its certificate (node.crt).
    #[arg(long)]
    state_dir: PathBuf,
    /// Address researchers use to reach published ports.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// CPU offered: cores (2) or millicores (1500m); default all of the host's.
    #[arg(long, value_parser = parse_cpu)]
    cpu: Option<i64>,
    /// Memory offered (4Gi, 512Mi); default the host's.
    #[arg(long, value_parser = parse_size)]
    memory: Option<i64>,
    /// Disk offered (20Gi); default the size of the engine's data file system.
    #[arg(long, value_parser = parse_size)]
    disk: Option<i64>,
    /// Host ports lent to slivers, FIRST-LAST.
    #[arg(long, value_parser = parse_port_range, default_value = "30000-30999")]
    ports: PortRange,
    /// Placement label key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// CA certificate (PEM) to trust for the service (the service logs its path; with
    /// `--tls auto` it is <data-dir>/ca.crt).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Replace an existing enrollment in the state dir.
    #[arg(long)]
    force: bool,
    /// Enroll a Kubernetes cluster's agent, which speaks for every node of the cluster
    /// (`--name` is the cluster's, at most 30 characters; its nodes become `<name>-<node>`).
    /// Capacity, address and labels are then each node's own; `--ports` is lent by each.
    #[arg(long)]
    cluster: bool,
}

/// Disk each member of a cluster offers when neither `--disk` nor its Node says.
const CLUSTER_MEMBER_DISK: i64 = 20 << 30;

/// The engine's data root, to measure disk where images and containers live; best effort.
async fn docker_root() -> Option<PathBuf> {
    let root = tokio::time::timeout(Duration::from_secs(3), async {
        let rt = runtime::docker::DockerRuntime::connect(None, "")
            .await
            .ok()?;
        rt.data_root().await
    })
    .await
    .ok()??;
    Some(root).filter(|p| p.exists())
}

/// The token as given: `-` means the first line of standard input.
fn token_from(given: String, stdin: impl std::io::BufRead) -> anyhow::Result<String> {
    if given != "-" {
        return Ok(given);
    }
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdin.take(64 * 1024), &mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the token from standard input: {e}"))?;
    let token = line.trim();
    if token.is_empty() {
        anyhow::bail!("--token - reads the token from standard input, which was empty");
    }
    Ok(token.to_string())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let needs_host = !a.cluster && (a.cpu.is_none() || a.memory.is_none() || a.disk.is_none());
    let host = if needs_host {
        host::capacity(docker_root().await.as_deref())
    } else {
        Resources::default()
    };
    let capacity = Resources {
        cpu_millis: a.cpu.unwrap_or(host.cpu_millis),
        memory_bytes: a.memory.unwrap_or(host.memory_bytes),
        disk_bytes: a.disk.unwrap_or(host.disk_bytes),
    };
    // A cluster's members report their own cpu and memory; disk is each member's share
    // unless its Node says (ephemeral-storage).
    let capacity = if a.cluster {
        Resources {
            cpu_millis: 0,
            memory_bytes: 0,
            disk_bytes: a.disk.unwrap_or(CLUSTER_MEMBER_DISK),
        }
    } else {
        capacity
    };
    let params = EnrollParams {
        server: a.server,
        token: token_from(a.token, std::io::stdin().lock())?,
        name: a.name,
        state_dir: a.state_dir.clone(),
        address: a.address,
        capacity,
        port_range: a.ports,
        labels: labels_from(&a.labels),
        ca_cert: a.ca_cert,
        force: a.force,
        cluster: a.cluster,
    };
    let config = enroll(params).await?;
    if config.cluster {
        println!(
            "enrolled cluster {} at site {}; state in {} (run it with --runtime kubernetes)",
            config.node,
            config.site,
            a.state_dir.display()
        );
        return Ok(());
    }
    println!(
        "enrolled node {} at site {}; state in {}",
        config.node,
        config.site,
        a.state_dir.display()
    );
    Ok(())
}
