//! One agent speaks for a whole Kubernetes cluster (the fake API server, in-process, with
//! its hooks standing in for a cluster admin): a Docker site and a cluster enrolled once with
//! `node-manager enroll --cluster`. Every Kubernetes node becomes a node of the cluster's site
//! (capacity, address and labels from the Node); a node that joins appears, one cordoned in
//! Kubernetes takes no new slivers, `slicectl node drain` cordons the Kubernetes node, a node
//! deleted from the cluster leaves (removed when empty, else kept unreachable with its
//! slivers); a slice spread over both sites runs on every node; the agent killed with SIGKILL
//! and restarted adopts its Pods without duplicates; a second agent with the same identity is
//! refused per member; a revoked cluster is cut off.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::testbed::{wait_running, web_slice};
use common::{events, make_site, node, nodes};
use slicebed_fake_kube::{Config, FakeKube, NodeConfig};
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{bin, wait_for, Clients, Service};

/// Child processes killed (SIGKILL) on drop.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `node-manager run --runtime kubernetes` on a cluster's enrollment: no `--kube-node`.
fn cluster_agent(state: &Path, kubeconfig: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(bin("node-manager"))
        .arg("run")
        .arg("--state-dir")
        .arg(state)
        .args(["--runtime", "kubernetes"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the cluster agent")
}

/// Enrolls cluster `name` into `site` with `node-manager enroll --cluster`.
async fn enroll_cluster(svc: &Service, admin: &Clients, site: &str, name: &str, state: &Path) {
    let token = slicebed_tests::nm::enrollment_token(admin, site).await;
    let mut c = Command::new(bin("node-manager"));
    c.arg("enroll")
        .args(["--server", &svc.url(), "--token", &token, "--name", name])
        .arg("--state-dir")
        .arg(state)
        .args(["--cluster", "--ports", "29600-29619"]);
    if let Some(ca) = svc.ca_cert() {
        c.arg("--ca-cert").arg(ca);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "enroll --cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("enrolled cluster {name}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs `slicectl ARGS` as the admin; its stdout, after checking it succeeded.
fn slicectl(svc: &Service, args: &[&str]) -> String {
    let out = Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .output()
        .expect("run slicectl");
    assert!(
        out.status.success(),
        "slicectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until node `name` exists in `state`.
async fn wait_state(a: &Clients, name: &str, state: pb::NodeState) -> pb::Node {
    wait_for(
        &format!("node {name} {state:?}"),
        Duration::from_secs(20),
        || {
            let mut admin = a.admin.clone();
            let name = name.to_string();
            async move {
                let n = admin
                    .get_node(pb::GetNodeRequest { name })
                    .await
                    .ok()?
                    .into_inner();
                (n.state == state as i32).then_some(n)
            }
        },
    )
    .await
}

/// The Pods the fake holds: (namespace/name, uid).
fn pods(fake: &FakeKube) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fake
        .list("pods", None)
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    p["metadata"]["name"].as_str().unwrap_or("")
                ),
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn unschedulable(fake: &FakeKube, node: &str) -> bool {
    fake.get("nodes", "", node)
        .and_then(|n| n["spec"]["unschedulable"].as_bool())
        .unwrap_or(false)
}

#[tokio::test]
async fn one_agent_speaks_for_every_node_of_its_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKube::start(Config::with_nodes(2)).await.unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();

    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "dock").await;
    make_site(&admin, "kube").await;
    let dock = unique("dock");
    let _docker = NodeManager::start(&svc, "dock", &dock).await;
    let state = tmp.path().join("cluster-state");
    enroll_cluster(&svc, &admin, "kube", "lab", &state).await;
    // A cluster's enrollment runs the cluster agent only: no --kube-node, no Docker.
    for (extra, says) in [
        (
            &["--runtime", "kubernetes", "--kube-node", "fake-node-1"][..],
            "--kube-node",
        ),
        (&["--runtime", "docker"][..], "--runtime kubernetes"),
    ] {
        let out = Command::new(bin("node-manager"))
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{extra:?}: {err}"
        );
    }
    let log = tmp.path().join("cluster-agent.log");
    let mut kids = Kids(vec![cluster_agent(&state, &kubeconfig, &log)]);

    // Both Kubernetes nodes are nodes of the site, with the Node's figures.
    for k in ["fake-node-1", "fake-node-2"] {
        let n = wait_state(&admin, &format!("lab-{k}"), pb::NodeState::Ready).await;
        assert_eq!(n.site, "kube");
        assert_eq!(n.cluster, "lab");
        let cap = n.capacity.unwrap();
        assert_eq!((cap.cpu_millis, cap.memory_bytes), (4000, 8 << 30));
        assert!(
            n.address.starts_with("127.0.0."),
            "InternalIP: {}",
            n.address
        );
        assert_eq!(
            n.labels.get("kubernetes.io/hostname").map(String::as_str),
            Some(k)
        );
        assert_eq!(
            n.port_range.map(|p| (p.first, p.last)),
            Some((29600, 29619))
        );
    }
    assert_eq!(
        node(&admin, &dock).await.cluster,
        "",
        "a plain node has no cluster"
    );

    // A slice spread over both sites runs on every node, one sliver each.
    let name = unique("spread");
    let mut req = web_slice(&name, 0);
    req.placement = Some(pb::PlacementRequest {
        slivers: 3,
        ..Default::default()
    });
    admin
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create slice");
    let s = wait_running(&admin, &name).await;
    let mut on: Vec<&str> = s.slivers.iter().map(|v| v.node.as_str()).collect();
    on.sort();
    assert_eq!(on, [dock.as_str(), "lab-fake-node-1", "lab-fake-node-2"]);
    let before = pods(&fake);
    assert_eq!(before.len(), 2, "one Pod per Kubernetes sliver: {before:?}");

    // A second agent with the cluster's identity is refused for each member it names.
    let log2 = tmp.path().join("second-agent.log");
    let mut second = cluster_agent(&state, &kubeconfig, &log2);
    wait_for("the second agent refused", Duration::from_secs(20), || {
        let a = admin.clone();
        async move {
            events(&a, "node/lab-fake-node-1")
                .await
                .iter()
                .any(|e| e.action == "second control channel refused")
                .then_some(())
        }
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    let l2 = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(l2.contains("already has an open control channel"), "{l2}");

    // kill -9 and restart: the agent adopts its Pods, with no duplicates.
    let mut agent = kids.0.pop().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    kids.0.push(cluster_agent(&state, &kubeconfig, &log));
    wait_for(
        "both members given their slivers again",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.matches("received desired set").count() >= 4)
                .map(|_| ())
        },
    )
    .await;
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.slivers.len(), 3);
    assert_eq!(
        pods(&fake),
        before,
        "Pods replaced or duplicated on restart"
    );

    // A node joins the cluster: it appears as a node of the site.
    let mut third = NodeConfig::new("fake-node-3");
    third.labels = BTreeMap::from([("zone".to_string(), "c".to_string())]);
    fake.add_node(&third).unwrap();
    let n = wait_state(&admin, "lab-fake-node-3", pb::NodeState::Ready).await;
    assert_eq!(n.labels.get("zone").map(String::as_str), Some("c"));

    // Cordoned in Kubernetes: disabled here, and nothing new is placed there.
    fake.set_unschedulable("fake-node-3", true).unwrap();
    wait_state(&admin, "lab-fake-node-3", pb::NodeState::Disabled).await;
    let mut only3 = web_slice(&unique("only3"), 0);
    only3.placement = Some(pb::PlacementRequest {
        slivers: 1,
        node_labels: [("zone".to_string(), "c".to_string())].into(),
        ..Default::default()
    });
    let e = admin
        .slices
        .clone()
        .create_slice(only3.clone())
        .await
        .expect_err("a slice only the cordoned node could take");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    fake.set_unschedulable("fake-node-3", false).unwrap();
    wait_state(&admin, "lab-fake-node-3", pb::NodeState::Ready).await;
    let only3_name = only3.name.clone();
    admin
        .slices
        .clone()
        .create_slice(only3)
        .await
        .expect("placed once uncordoned");

    // `slicectl node drain` cordons the Kubernetes node; `node enable` uncordons it.
    slicectl(&svc, &["node", "drain", "lab-fake-node-2"]);
    wait_for("fake-node-2 cordoned", Duration::from_secs(20), || async {
        unschedulable(&fake, "fake-node-2").then_some(())
    })
    .await;
    wait_state(&admin, "lab-fake-node-2", pb::NodeState::Draining).await;
    slicectl(&svc, &["node", "enable", "lab-fake-node-2"]);
    wait_for(
        "fake-node-2 uncordoned",
        Duration::from_secs(20),
        || async { (!unschedulable(&fake, "fake-node-2")).then_some(()) },
    )
    .await;
    wait_state(&admin, "lab-fake-node-2", pb::NodeState::Ready).await;

    // A node deleted from the cluster while it holds a sliver: the member leaves but stays,
    // unreachable, with its sliver.
    assert!(fake.remove_node("fake-node-3"));
    wait_state(&admin, "lab-fake-node-3", pb::NodeState::Unreachable).await;
    let left = events(&admin, "node/lab-fake-node-3").await;
    assert!(
        left.iter()
            .any(|e| e.action == "left the cluster" && e.detail.contains("1 live sliver")),
        "{left:?}"
    );
    // Back in the cluster it is the same member; once empty, deleting its Node removes it.
    fake.add_node(&third).unwrap();
    wait_state(&admin, "lab-fake-node-3", pb::NodeState::Ready).await;
    admin
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: only3_name })
        .await
        .unwrap();
    wait_for("lab-fake-node-3 empty", Duration::from_secs(20), || async {
        (node(&admin, "lab-fake-node-3").await.slivers == 0).then_some(())
    })
    .await;
    assert!(fake.remove_node("fake-node-3"));
    wait_for(
        "lab-fake-node-3 removed",
        Duration::from_secs(20),
        || async {
            (!nodes(&admin)
                .await
                .iter()
                .any(|n| n.name == "lab-fake-node-3"))
            .then_some(())
        },
    )
    .await;

    // The cluster revoked: every member is cut off, and the node list says why.
    slicectl(&svc, &["node", "revoke", "--cluster", "lab"]);
    for k in ["fake-node-1", "fake-node-2"] {
        let n = wait_state(&admin, &format!("lab-{k}"), pb::NodeState::Unreachable).await;
        assert!(n.cluster_revoked);
    }
    let table = slicectl(&svc, &["node", "list"]);
    assert!(
        table.contains("CLUSTER") && table.contains("lab (revoked)"),
        "{table}"
    );
    assert!(
        nodes(&admin)
            .await
            .iter()
            .filter(|n| n.cluster == "lab")
            .all(|n| n.state != pb::NodeState::Ready as i32),
        "no member of a revoked cluster is ready"
    );
}
