//! The reconciler against the real Docker engine: limits, hardening, ports, exit states,
//! node scoping and clean-up. Skips (with a message) where no engine is reachable.
//! Each test uses its own node name, so tests and real nodes sharing the engine never meet.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use node_manager::domain::{
    PortMapping, ReportedState, Resources, RestartPolicy, SliverReport, SliverSpec,
};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::reconciler::Reconciler;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;
use node_manager::subnets::Pool;

async fn engine(node: &str) -> Option<DockerRuntime> {
    let rt = DockerRuntime::connect(None, format!("{node}-{}", std::process::id()))
        .await
        .ok()?;
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return None;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return None;
    }
    cleanup(&rt).await;
    Some(rt)
}

async fn cleanup(rt: &DockerRuntime) {
    for c in rt.list().await.unwrap() {
        rt.remove(&c.container_id).await.unwrap();
    }
    for n in rt.list_networks().await.unwrap() {
        rt.remove_network(&n).await.unwrap();
    }
}

fn spec(id: &str, slice: &str, command: &str) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: slice.into(),
        index: 0,
        image: DEFAULT_TAG.into(),
        command: vec!["sh".into(), "-c".into(), command.into()],
        env: [("GREETING".to_string(), "hi".to_string())].into(),
        resources: Resources {
            cpu_millis: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 30,
        },
        ports: vec![],
        restart: RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    }
}

fn desired(specs: &[SliverSpec]) -> BTreeMap<String, SliverSpec> {
    specs
        .iter()
        .map(|s| (s.sliver_id.clone(), s.clone()))
        .collect()
}

/// Reconciler plus the last report seen per sliver.
struct Probe {
    rec: Reconciler<DockerRuntime>,
    seen: HashMap<String, SliverReport>,
}

impl Probe {
    fn new(rt: &DockerRuntime) -> Self {
        Self {
            rec: Reconciler::new(rt.clone()),
            seen: HashMap::new(),
        }
    }

    /// Passes until `id` was last reported in `state` (bounded).
    async fn until(
        &mut self,
        d: &BTreeMap<String, SliverSpec>,
        id: &str,
        state: ReportedState,
    ) -> SliverReport {
        // Bounded, with room for a loaded 2-core machine: about 30 s.
        for _ in 0..300 {
            if let Some(r) = self.seen.get(id).filter(|r| r.state == state) {
                return r.clone();
            }
            for r in self.rec.pass(Some(d)).await.unwrap() {
                self.seen.insert(r.sliver_id.clone(), r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "sliver {id} never reached {state:?}; last {:?}",
            self.seen.get(id)
        );
    }

    /// Passes until `id` was last reported in `state` with `message` (bounded). The engine may
    /// learn of an OOM kill just after the exit, so the first report can lack it.
    async fn until_message(
        &mut self,
        d: &BTreeMap<String, SliverSpec>,
        id: &str,
        state: ReportedState,
        message: &str,
    ) -> SliverReport {
        // Bounded, with room for a loaded 2-core machine: about 30 s.
        for _ in 0..300 {
            let r = self.until(d, id, state).await;
            if r.message == message {
                return r;
            }
            for r in self.rec.pass(Some(d)).await.unwrap() {
                self.seen.insert(r.sliver_id.clone(), r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "sliver {id} never reported {message:?}; last {:?}",
            self.seen.get(id)
        );
    }
}

#[tokio::test]
async fn runs_hardened_limited_sliver_and_adopts_after_restart() {
    let Some(rt) = engine("nmtest-a").await else {
        return;
    };
    let mut s = spec("web0", "web", "echo $GREETING; sleep 300");
    s.ports = vec![PortMapping {
        name: "http".into(),
        container_port: 8080,
        host_port: 30917,
    }];
    let d = desired(&[s]);
    let mut probe = Probe::new(&rt);
    probe.until(&d, "web0", ReportedState::Running).await;

    let name = format!("sb-{}-web0", rt.node());
    let c = rt
        .docker()
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let h = c.host_config.unwrap();
    assert_eq!(h.nano_cpus, Some(500_000_000));
    assert_eq!(h.memory, Some(64 << 20));
    assert_eq!(h.memory_swap, Some(64 << 20));
    assert_eq!(h.pids_limit, Some(512));
    assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(h.network_mode, Some(format!("sb-{}-web", rt.node())));
    let binding = &h.port_bindings.unwrap()["8080/tcp"];
    assert_eq!(
        binding.as_ref().unwrap()[0].host_port.as_deref(),
        Some("30917")
    );
    assert_eq!(c.config.unwrap().hostname.as_deref(), Some("web-0"));

    // A fresh reconciler (the agent restarted) adopts it: nothing created, nothing removed.
    let mut again = Reconciler::new(rt.clone());
    assert_eq!(again.snapshot().await.unwrap().len(), 1);
    assert!(again.pass(Some(&d)).await.unwrap().is_empty());
    assert_eq!(rt.list().await.unwrap().len(), 1);

    // The slice goes away: container DELETED, network removed.
    let reports = again.pass(Some(&BTreeMap::new())).await.unwrap();
    assert!(reports
        .iter()
        .any(|r| r.sliver_id == "web0" && r.state == ReportedState::Deleted));
    assert!(rt.list().await.unwrap().is_empty());
    assert!(rt.list_networks().await.unwrap().is_empty());
}

#[tokio::test]
async fn exit_codes_oom_and_missing_images() {
    let Some(rt) = engine("nmtest-b").await else {
        return;
    };
    let ok = spec("ok", "batch", "exit 0");
    let bad = spec("bad", "batch", "exit 3");
    let mut hog = spec("hog", "batch", "x=a; while true; do x=$x$x; done");
    hog.resources.memory_bytes = 8 << 20;
    let mut missing = spec("missing", "batch", "true");
    missing.image = "foo:1".into();
    let d = desired(&[ok, bad, hog, missing]);
    let mut probe = Probe::new(&rt);
    assert_eq!(
        probe.until(&d, "ok", ReportedState::Exited).await.exit_code,
        Some(0)
    );
    let r = probe.until(&d, "bad", ReportedState::Failed).await;
    assert_eq!((r.exit_code, r.message.as_str()), (Some(3), "exit code 3"));
    let oom = "OOM-killed (memory limit 8Mi)";
    probe
        .until_message(&d, "hog", ReportedState::Failed, oom)
        .await;
    let r = probe.until(&d, "missing", ReportedState::Failed).await;
    assert_eq!(
        r.message,
        format!(
            r#"image "foo:1" is not present on node {} (no registry is reachable; build or import it)"#,
            rt.node()
        )
    );
    cleanup(&rt).await;
}

#[tokio::test]
async fn nodes_sharing_an_engine_do_not_see_each_other() {
    let Some(a) = engine("nmtest-c1").await else {
        return;
    };
    let Some(b) = engine("nmtest-c2").await else {
        return;
    };
    let d = desired(&[spec("s1", "shared", "sleep 300")]);
    Probe::new(&a).until(&d, "s1", ReportedState::Running).await;
    // Node b wants nothing: it must not remove node a's sliver.
    Reconciler::new(b.clone())
        .pass(Some(&BTreeMap::new()))
        .await
        .unwrap();
    assert!(b.list().await.unwrap().is_empty());
    assert_eq!(a.list().await.unwrap().len(), 1);
    cleanup(&a).await;
    cleanup(&b).await;
}

/// The subnets of a node's slice networks, as the engine records them.
async fn slice_subnets(rt: &DockerRuntime, node: &str) -> Vec<String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("slicebed.node={node}")])]);
    rt.docker()
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| n.ipam?.config?.first()?.subnet.clone())
        .collect()
}

#[tokio::test]
async fn slice_networks_come_from_the_node_pool_well_past_the_engines_31() {
    let Some(first) = engine("netpool-0").await else {
        return;
    };
    let pool: Pool = "10.251.0.0/16".parse().unwrap();
    let first = first.with_network_pool(Some(pool));
    let mut nodes = vec![first.clone()];
    for i in 1..4 {
        let rt = DockerRuntime::new(
            first.docker().clone(),
            format!("netpool-{i}-{}", std::process::id()),
        )
        .with_network_pool(Some(pool));
        cleanup(&rt).await;
        nodes.push(rt);
    }
    // Four node managers sharing the engine, each creating 10 slice networks one after the
    // other (as its reconciler does), all at the same time: they race for the same subnets.
    let make = |rt: DockerRuntime| async move {
        for i in 0..10 {
            rt.ensure_network(&format!("s{i}")).await.unwrap();
        }
    };
    futures::future::join_all(nodes.iter().cloned().map(make)).await;
    let mut all = Vec::new();
    for rt in &nodes {
        all.extend(slice_subnets(rt, rt.node()).await);
    }
    assert_eq!(all.len(), 40, "{all:?}");
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        40,
        "no two slice networks share a subnet: {all:?}"
    );
    let pool_net = pool.net();
    for s in &all {
        let net: node_manager::subnets::Net = s.parse().unwrap();
        assert!(
            pool_net.overlaps(&net) && net.prefix() == 24,
            "{s} outside {pool_net}"
        );
    }
    // A sliver in such a network gets an address of it.
    let mut rec = Reconciler::new(first.clone());
    let desired = BTreeMap::from([("p1".to_string(), spec("p1", "s3", "sleep 60"))]);
    rec.pass(Some(&desired)).await.unwrap();
    let id = first.list().await.unwrap()[0].container_id.clone();
    let c = first
        .docker()
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let ip = c
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.into_values().next())
        .and_then(|e| e.ip_address)
        .unwrap();
    assert!(ip.starts_with("10.251."), "{ip}");
    for rt in &nodes {
        cleanup(rt).await;
    }
}

/// bollard speaks a newer API than many engines in the field (this one included); without
/// negotiation every versioned call is refused with "client version is too new".
#[tokio::test]
async fn negotiates_the_engine_api_version() {
    let Some(rt) = engine("nm-negotiate").await else {
        return;
    };
    let fresh = DockerRuntime::connect(None, rt.node().to_string())
        .await
        .expect("connect");
    let server = fresh.docker().version().await.expect("engine version");
    let server_api = server.api_version.expect("engine reports its API version");
    let (major, minor) = server_api.split_once('.').expect("MAJOR.MINOR");
    let server_api = (
        major.parse::<usize>().unwrap(),
        minor.parse::<usize>().unwrap(),
    );
    let client = fresh.docker().client_version();
    assert!(
        (client.major_version, client.minor_version) <= server_api,
        "client speaks {client}, engine at most {}.{}",
        server_api.0,
        server_api.1
    );
    // A versioned call succeeds after negotiation.
    assert!(fresh.list().await.expect("list containers").is_empty());
    assert!(fresh
        .list_networks()
        .await
        .expect("list networks")
        .is_empty());
}
