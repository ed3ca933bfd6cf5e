//! A testbed with one Docker site and one Kubernetes site on the fake API server (its real
//! binary, reached through the kubeconfig it writes): a slice spread over both runs every
//! sliver, the Pod the fake stored carries the limits and hardening, and the Kubernetes agent
//! killed with SIGKILL and restarted adopts its Pod without a duplicate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::testbed::{wait_running, web_slice};
use common::{make_site, wait_ready};
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{enroll_cmd, unique, NodeManager};
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

fn kube_agent(state: &Path, kubeconfig: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(bin("node-manager"))
        .arg("run")
        .arg("--state-dir")
        .arg(state)
        .args(["--runtime", "kubernetes", "--kube-node", "fake-node-1"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the Kubernetes agent")
}

/// The Pods the fake holds, through kubectl.
fn pods(kubeconfig: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "pods", "--all-namespaces", "-o", "json"])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_slice_spread_over_docker_and_kubernetes_runs_everywhere_and_survives_kill9() {
    if slicebed_tests::kube::skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig: PathBuf = tmp.path().join("kubeconfig");
    let mut kids = Kids(vec![Command::new(bin("slicebed-fake-kube"))
        .args(["--listen", "127.0.0.1:0", "--nodes", "1"])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the fake API server")]);
    wait_for("the fake's kubeconfig", Duration::from_secs(10), || async {
        kubeconfig.exists().then_some(())
    })
    .await;

    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "dock").await;
    make_site(&admin, "kube").await;
    let _docker = NodeManager::start(&svc, "dock", &unique("dock")).await;
    let token = admin
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "kube".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let state = tmp.path().join("kube-state");
    let kube_name = unique("kube");
    let out = enroll_cmd(&svc, &token, &kube_name, &state, (29500, 29519))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = tmp.path().join("kube-agent.log");
    kids.0.push(kube_agent(&state, &kubeconfig, &log));
    wait_ready(&admin, 2).await;

    let name = unique("spread");
    admin
        .slices
        .clone()
        .create_slice(web_slice(&name, 1))
        .await
        .expect("create slice");
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.slivers.len(), 2);
    assert!(
        s.slivers.iter().any(|v| v.node == kube_name),
        "no sliver on the Kubernetes site"
    );
    let on_kube: Vec<_> = pods(&kubeconfig);
    assert_eq!(on_kube.len(), 1, "one Pod for the Kubernetes sliver");
    let p = &on_kube[0];
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "200m");
    assert_eq!(
        c["resources"]["requests"]["memory"],
        (64i64 << 20).to_string()
    );
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let uid = p["metadata"]["uid"].clone();

    // kill -9 and restart: the agent adopts its Pod, and the sliver stays running.
    let mut agent = kids.0.pop().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    kids.0.push(kube_agent(&state, &kubeconfig, &log));
    wait_for(
        "the restarted Kubernetes agent given its slivers",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.matches("received desired set").count() >= 2)
                .map(|_| ())
        },
    )
    .await;
    wait_ready(&admin, 2).await;
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.slivers.len(), 2);
    let after = pods(&kubeconfig);
    assert_eq!(
        after.len(),
        1,
        "a restarted agent made a duplicate: {after:#?}"
    );
    assert_eq!(
        after[0]["metadata"]["uid"], uid,
        "the Pod was replaced, not adopted"
    );
}
