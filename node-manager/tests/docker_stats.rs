//! `Runtime::stats` against the real Docker engine: one pass reads the counters of this node's
//! running sliver containers only, with when each started, and a CPU loop's counters grow
//! while an idle container's stay flat. Containers are made here directly with the node's
//! labels (as the reconciler labels them). Skips (with a message) where no engine is reachable.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::{labels, ContainerStats, Runtime};

/// Starts a container labelled as sliver `sliver` of `node`, running `script`.
async fn start(docker: &Docker, node: &str, sliver: &str, script: &str) -> String {
    let labels = HashMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::NODE.to_string(), node.to_string()),
        (labels::SLIVER.to_string(), sliver.to_string()),
        (labels::SLICE.to_string(), "stats".to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(DEFAULT_TAG.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            nano_cpus: Some(500_000_000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(labels::container_name(node, sliver)),
        ..Default::default()
    };
    let id = docker.create_container(Some(opts), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    id
}

async fn remove(docker: &Docker, ids: &[String]) {
    for id in ids {
        let opts = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(id, Some(opts)).await;
    }
}

fn of<'a>(pass: &'a [ContainerStats], sliver: &str) -> &'a ContainerStats {
    pass.iter()
        .find(|s| s.sliver_id == sliver)
        .unwrap_or_else(|| panic!("{sliver} not in {pass:?}"))
}

#[tokio::test]
async fn a_pass_reads_this_nodes_running_slivers_and_a_cpu_loop_counts_up() {
    let node = format!("stats-{}", std::process::id());
    let Ok(rt) = DockerRuntime::connect(None, node.clone()).await else {
        eprintln!("skipping: no Docker engine");
        return;
    };
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return;
    }
    let docker = Docker::connect_with_local_defaults().unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);
    let ids = vec![
        start(&docker, &node, "busy", "while :; do :; done").await,
        start(&docker, &node, "idle", "exec sleep 1000").await,
        start(
            &docker,
            &format!("{node}-other"),
            "theirs",
            "exec sleep 1000",
        )
        .await,
    ];
    let first = rt.stats().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = rt.stats().await.unwrap();
    remove(&docker, &ids).await;

    let mut seen: Vec<&str> = second.iter().map(|s| s.sliver_id.as_str()).collect();
    seen.sort();
    assert_eq!(seen, ["busy", "idle"], "only this node's slivers");
    let (b1, b2) = (of(&first, "busy"), of(&second, "busy"));
    assert_eq!(b2.container_id, ids[0]);
    let started = b2.started_at.expect("start time read from the engine");
    assert!(
        started >= before && started <= SystemTime::now(),
        "{started:?}"
    );
    // At least a tenth of a core over two seconds, however busy the machine.
    assert!(
        b2.cpu_nanos >= b1.cpu_nanos + 200_000_000,
        "{b1:?} -> {b2:?}"
    );
    assert!(b2.memory_bytes > 0, "{b2:?}");
    let (i1, i2) = (of(&first, "idle"), of(&second, "idle"));
    assert!(
        i2.cpu_nanos - i1.cpu_nanos < 100_000_000,
        "{i1:?} -> {i2:?}"
    );
}
