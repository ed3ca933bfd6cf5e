//! `bench`: how fast Slicebed makes slivers real, against the Docker engine alone.
//!
//! 1. Time from CreateSlice to every sliver running, for K slivers on N node managers, against
//!    raw parallel create+start of the same containers through the same engine (bollard), in
//!    one run; prints both and the ratio (median of R rounds).
//! 2. The node manager's resident memory with 50 slivers.
//!
//! Usage: `cargo run --release -p slicebed-tests --bin bench -- [K] [N] [R]` after
//! `cargo build --release --workspace --bins` (set SLICEBED_BIN_DIR=target/release).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

const MI: i64 = 1 << 20;

fn req(name: &str, k: u32) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        command: vec!["sleep".into(), "3600".into()],
        resources: Some(pb::Resources {
            cpu_millis: 10,
            memory_bytes: 16 * MI,
            disk_bytes: 64 * MI,
        }),
        placement: Some(pb::PlacementRequest {
            slivers: k,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn all_running(a: &Clients, name: &str) -> bool {
    let Ok(s) = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest { name: name.into() })
        .await
    else {
        return false;
    };
    let s = s.into_inner();
    s.slivers
        .iter()
        .all(|v| v.state == pb::SliverState::Running as i32)
}

async fn slicebed_round(a: &Clients, name: &str, k: u32) -> Duration {
    let start = Instant::now();
    a.slices
        .clone()
        .create_slice(req(name, k))
        .await
        .expect("create slice");
    while !all_running(a, name).await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    a.slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: name.into() })
        .await
        .expect("delete");
    let a2 = a.clone();
    let n = name.to_string();
    wait_for("slivers removed", Duration::from_secs(120), || {
        let a = a2.clone();
        let n = n.clone();
        async move {
            let s = a
                .slices
                .clone()
                .get_slice(pb::GetSliceRequest { name: n })
                .await
                .ok()?
                .into_inner();
            s.slivers
                .iter()
                .all(|v| v.state == pb::SliverState::Deleted as i32)
                .then_some(())
        }
    })
    .await;
    took
}

async fn docker_round(d: &Docker, k: u32) -> Duration {
    let tag = unique("raw");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..k {
        let d = d.clone();
        let name = format!("{tag}-{i}");
        tasks.push(tokio::spawn(async move {
            let cfg = ContainerCreateBody {
                image: Some("slicebed/base:latest".to_string()),
                cmd: Some(vec!["sleep".to_string(), "3600".to_string()]),
                labels: Some(HashMap::from([(
                    "slicebed.bench".to_string(),
                    "raw".to_string(),
                )])),
                host_config: Some(HostConfig {
                    nano_cpus: Some(10_000_000),
                    memory: Some(16 * MI),
                    memory_swap: Some(16 * MI),
                    pids_limit: Some(512),
                    cap_drop: Some(vec!["ALL".into()]),
                    security_opt: Some(vec!["no-new-privileges".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            d.create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                cfg,
            )
            .await
            .expect("create");
            d.start_container(&name, None::<StartContainerOptions>)
                .await
                .expect("start");
            name
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    let took = start.elapsed();
    for n in names {
        let _ = d
            .remove_container(
                &n,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let k = args.first().copied().unwrap_or(30);
    let n = args.get(1).copied().unwrap_or(3);
    let rounds = args.get(2).copied().unwrap_or(3);

    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut nodes = Vec::new();
    for i in 0..n {
        let site = format!("site{i}");
        a.admin
            .clone()
            .create_site(pb::CreateSiteRequest {
                site: Some(pb::Site {
                    name: site.clone(),
                    enabled: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        nodes.push(NodeManager::start(&svc, &site, &unique("bench")).await);
    }
    wait_for("nodes ready", Duration::from_secs(30), || {
        let a = a.clone();
        async move {
            let ns = a
                .admin
                .clone()
                .list_nodes(pb::ListNodesRequest::default())
                .await
                .ok()?
                .into_inner()
                .nodes;
            (ns.iter()
                .filter(|x| x.state == pb::NodeState::Ready as i32)
                .count()
                == n as usize)
                .then_some(())
        }
    })
    .await;
    let d = Docker::connect_with_local_defaults().expect("docker");

    // Warm-up: the first container start pays for caches in the engine.
    slicebed_round(&a, "warmup", n).await;
    docker_round(&d, n).await;

    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        ours.push(slicebed_round(&a, &format!("bench{r}"), k).await);
        raw.push(docker_round(&d, k).await);
        println!(
            "round {r}: slicebed {:?}, docker {:?}",
            ours[r as usize], raw[r as usize]
        );
    }
    let (o, w) = (median(ours), median(raw));
    println!("create-to-running, {k} slivers on {n} node managers (median of {rounds}):");
    println!(
        "  slicebed CreateSlice -> all running: {:.0} ms",
        o.as_secs_f64() * 1000.0
    );
    println!(
        "  raw parallel docker create+start:    {:.0} ms",
        w.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio: {:.2}x (target <= 1.25x)",
        o.as_secs_f64() / w.as_secs_f64()
    );

    // Node manager memory with 50 slivers on one node.
    let pid = nodes[0].pid().expect("node manager pid");
    let idle = rss_kib(pid);
    let mut big = req("rss50", 50);
    big.placement = Some(pb::PlacementRequest {
        slivers: 50,
        sites: vec!["site0".into()],
        ..Default::default()
    });
    big.resources = Some(pb::Resources {
        cpu_millis: 10,
        memory_bytes: 8 * MI,
        disk_bytes: 16 * MI,
    });
    a.slices
        .clone()
        .create_slice(big)
        .await
        .expect("50 slivers");
    wait_for("50 slivers running", Duration::from_secs(300), || {
        let a = a.clone();
        async move { all_running(&a, "rss50").await.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = rss_kib(pid);
    println!(
        "node-manager RSS: {:.1} MiB idle, {:.1} MiB with 50 slivers (target <= 20 MiB)",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0
    );
    a.slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "rss50".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
}
