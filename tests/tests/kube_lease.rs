//! A lease ends on a Kubernetes site even with its cluster agent down: the cluster itself ends
//! the Pod by its `activeDeadlineSeconds` (the fake's simulated kubelet, as a real one would),
//! and the agent, once restarted, removes what is left and recreates nothing. The site is the
//! fake API server's real binary and one cluster agent enrolled with `node-manager enroll
//! --cluster`; what the cluster holds is read with `kubectl`, as a site admin would.

mod common;

use std::time::Duration;

use common::make_site;
use common::testbed::{slice, wait_running, web_slice};
use slicebed_proto::v1 as pb;
use slicebed_tests::kube::{member_ready, skip_without_kubectl, FakeKubeProcess, KubeAgent};
use slicebed_tests::nm::unique;
use slicebed_tests::{wait_for, Clients, Service};

#[tokio::test]
async fn a_lease_ends_on_the_cluster_with_the_agent_down_and_the_agent_clears_it_after() {
    if skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKubeProcess::start(tmp.path(), 1, false).await;
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "kube").await;
    let mut agent = KubeAgent::cluster(
        &svc,
        &admin,
        "kube",
        "lab",
        (29660, 29679),
        tmp.path(),
        &fake.kubeconfig,
    )
    .await;
    member_ready(&admin).await;

    let short = unique("short");
    let mut req = web_slice(&short, 1);
    req.lease = Some(prost_types::Duration {
        seconds: 15,
        nanos: 0,
    });
    admin.slices.clone().create_slice(req).await.unwrap();
    wait_running(&admin, &short).await;
    let selector = format!("slicebed.dev/slice={short}");
    let pods = fake.items("pods", &selector);
    assert_eq!(pods.len(), 1);
    let deadline = pods[0]["spec"]["activeDeadlineSeconds"].as_u64();
    assert!(
        deadline.is_some_and(|s| (1..=15).contains(&s)),
        "the lease given to the cluster: {deadline:?}"
    );

    // The agent is killed; the cluster itself ends the Pod at the lease's end.
    agent.kill9();
    let ended = wait_for(
        "the cluster ending the Pod by its deadline",
        Duration::from_secs(60),
        || async {
            let p = fake.items("pods", &selector).pop()?;
            (p["status"]["reason"] == "DeadlineExceeded").then_some(p)
        },
    )
    .await;
    assert_eq!(ended["status"]["phase"], "Failed");
    // The researcher sees the slice expired, whatever the agent's state.
    wait_for("the slice expired", Duration::from_secs(60), || async {
        let s = slice(&admin, &short).await?;
        (s.state == pb::SliceState::Expired as i32).then_some(())
    })
    .await;
    assert_eq!(
        fake.items("namespaces", &selector).len(),
        1,
        "nothing removed while no agent runs"
    );

    // Restarted, the agent removes what is left, and recreates nothing.
    agent.run();
    wait_for(
        "no Pod and no namespace of the ended slice",
        Duration::from_secs(60),
        || async {
            (fake.items("pods", &selector).is_empty()
                && fake.items("namespaces", &selector).is_empty())
            .then_some(())
        },
    )
    .await;
    // A slice made afterwards runs: the agent has reconciled since, and still made nothing
    // for the ended one.
    let later = unique("later");
    admin
        .slices
        .clone()
        .create_slice(web_slice(&later, 1))
        .await
        .unwrap();
    wait_running(&admin, &later).await;
    assert_eq!(
        fake.items("pods", &format!("slicebed.dev/slice={later}"))
            .len(),
        1
    );
    assert!(
        fake.items("pods", &selector).is_empty() && fake.items("namespaces", &selector).is_empty(),
        "the ended slice came back: {}",
        agent.log()
    );
}
