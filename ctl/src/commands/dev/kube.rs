//! `slicectl dev up --kube-site`: a Kubernetes-backed site on the fake API server. Starts
//! `slicebed-fake-kube` with three nodes, enrolls one cluster agent into the site `k8s-lab`
//! (`node-manager enroll --cluster`) and runs it, so every fake node shows as a node of the
//! site and the demo slice's sliver there runs as a Pod. Everything lives under `DIR/kube`;
//! `dev down` stops both processes (the fake keeps its objects in memory only) and removes it.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use slicebed_proto::v1::{CreateEnrollmentTokenRequest, CreateSiteRequest};

use super::{
    find_binary,
    launch::{path_arg, run_tool, step, with_log, Started},
    sites::{port_range, KUBE_SITE, SITES},
};
use crate::{client::Clients, commands::user::duration};

/// The cluster's name: its nodes are `lab-fake-node-1`…
pub const CLUSTER: &str = "lab";
/// Nodes of the fake cluster.
const NODES: usize = 3;

/// The Slicebed names of the fake cluster's nodes.
pub fn members() -> Vec<String> {
    (1..=NODES)
        .map(|i| format!("{CLUSTER}-fake-node-{i}"))
        .collect()
}

/// Starts the fake cluster and its agent; returns once the agent runs (the caller waits for
/// the members to be ready with the other nodes).
pub async fn start(
    started: &mut Started,
    c: &mut Clients,
    node_bin: &Path,
    server: &str,
    ca_cert: &Path,
) -> Result<()> {
    let fake_bin = find_binary("slicebed-fake-kube")?;
    let dir = started.dir.join("kube");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    let _ = fs::remove_file(&kubeconfig);
    step(&format!(
        "Starting a fake Kubernetes cluster with {NODES} nodes"
    ));
    let log = dir.join("fake-kube.log");
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--nodes".into(),
        NODES.to_string(),
        "--kubeconfig-out".into(),
        path_arg(&kubeconfig),
    ];
    started.spawn("fake-kube", &fake_bin, &args, &log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        started.check_alive()?;
        if Instant::now() > deadline {
            return Err(with_log(
                "slicebed-fake-kube did not write its kubeconfig within 30s",
                &log,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let s = &KUBE_SITE;
    step(&format!(
        "Creating site {} ({}, {}) and enrolling cluster {CLUSTER}",
        s.name, s.city, s.country
    ));
    let site = s.proto();
    c.admin
        .create_site(CreateSiteRequest { site: Some(site) })
        .await
        .context("creating the Kubernetes site")?;
    let token = c
        .admin
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            site: s.name.into(),
            ttl: Some(duration(600)),
        })
        .await?
        .into_inner()
        .token;
    let state = dir.join("cluster");
    // After every demo site's ports, so no member collides with a Docker node.
    let (first, last) = port_range(SITES.len());
    let args: Vec<String> = [
        "enroll",
        "--cluster",
        "--server",
        server,
        "--ca-cert",
        &path_arg(ca_cert),
        "--token",
        &token,
        "--name",
        CLUSTER,
        "--state-dir",
        &path_arg(&state),
        "--ports",
        &format!("{first}-{last}"),
        "--disk",
        "10Gi",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    run_tool(
        node_bin,
        &args,
        Duration::from_secs(60),
        "node-manager enroll --cluster",
    )
    .await?;
    let args = vec![
        "run".to_string(),
        "--state-dir".into(),
        path_arg(&state),
        "--runtime".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        path_arg(&kubeconfig),
    ];
    started.spawn("kube-agent", node_bin, &args, &dir.join("agent.log"))?;
    Ok(())
}
