//! A testbed with one Docker site and one Kubernetes site on the fake API server (its real
//! binary, reached through the kubeconfig it writes): a slice spread over both runs every
//! sliver, the Pod the fake stored carries the limits and hardening, and the Kubernetes agent
//! killed with SIGKILL and restarted adopts its Pod without a duplicate.

mod common;

use std::time::Duration;

use common::testbed::{wait_running, web_slice};
use common::{make_site, wait_ready};
use slicebed_tests::kube::{FakeKubeProcess, KubeAgent};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

#[tokio::test]
async fn a_slice_spread_over_docker_and_kubernetes_runs_everywhere_and_survives_kill9() {
    if slicebed_tests::kube::skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKubeProcess::start(tmp.path(), 1, false).await;
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "dock").await;
    make_site(&admin, "kube").await;
    let _docker = NodeManager::start(&svc, "dock", &unique("dock")).await;
    let kube_name = unique("kube");
    let mut agent = KubeAgent::single_node(
        &svc,
        &admin,
        "kube",
        &kube_name,
        "fake-node-1",
        (29500, 29519),
        tmp.path(),
        &fake.kubeconfig,
    )
    .await;
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
    let on_kube = fake.items("pods", "");
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
    agent.kill9();
    agent.run();
    wait_for(
        "the restarted Kubernetes agent given its slivers",
        Duration::from_secs(30),
        || async { (agent.log().matches("received desired set").count() >= 2).then_some(()) },
    )
    .await;
    wait_ready(&admin, 2).await;
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.slivers.len(), 2);
    let after = fake.items("pods", "");
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
