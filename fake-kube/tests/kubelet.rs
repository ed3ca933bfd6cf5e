//! The simulated kubelet seen through kube: Pods become Running, scripted failures show the
//! statuses a real kubelet reports, deadlines end Pods, deletion is graceful, namespaces
//! cascade, Pods nobody can place stay Pending with the scheduler's reason, and logs follow.

mod common;

use common::{namespace, pod, wait_for};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Namespace, Node, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use slicebed_fake_kube::Behaviour;

async fn status_where(pods: &Api<Pod>, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    wait_for(10, what, || async {
        let p = pods.get(name).await.ok()?;
        f(&p).then_some(p)
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn container(p: &Pod) -> ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

fn waiting_reason(p: &Pod) -> String {
    container(p)
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
        .unwrap_or_default()
}

async fn setup(nodes: usize) -> (common::Env, Api<Pod>) {
    let env = common::start(nodes).await;
    namespace(&env.client, "s1").await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "s1");
    (env, pods)
}

fn with_annotation(mut p: Pod, behaviour: &str, restart: &str) -> Pod {
    p.metadata.annotations = Some(
        [(
            slicebed_fake_kube::BEHAVIOUR_ANNOTATION.to_string(),
            behaviour.to_string(),
        )]
        .into(),
    );
    p.spec.as_mut().unwrap().restart_policy = Some(restart.into());
    p
}

#[tokio::test]
async fn a_bound_pod_goes_through_container_creating_to_running() {
    let (env, pods) = setup(1).await;
    pods.create(&PostParams::default(), &pod("p", Some("fake-node-1")))
        .await
        .unwrap();
    status_where(&pods, "p", "ContainerCreating", |p| {
        waiting_reason(p) == "ContainerCreating"
    })
    .await;
    let p = status_where(&pods, "p", "Running", |p| phase(p) == "Running").await;
    let st = p.status.unwrap();
    assert!(container(&pods.get("p").await.unwrap()).ready);
    assert!(st.host_ip.unwrap().starts_with("127.0.0."));
    assert!(st.pod_ip.is_some() && st.start_time.is_some());
    let ready = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    drop(env);
}

#[tokio::test]
async fn scripted_failures_show_the_statuses_a_kubelet_reports() {
    let (env, pods) = setup(1).await;
    let pp = PostParams::default();
    let mut pull = pod("pull", Some("fake-node-1"));
    pull.spec.as_mut().unwrap().containers[0].image = Some("example.org/nope:1".into());
    pods.create(&pp, &with_annotation(pull, "image-pull-fail", "Always"))
        .await
        .unwrap();
    pods.create(
        &pp,
        &with_annotation(pod("oom", Some("fake-node-1")), "oom", "Never"),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &with_annotation(pod("exit3", Some("fake-node-1")), "exit:3", "Never"),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &with_annotation(pod("done", Some("fake-node-1")), "exit:0", "Never"),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &with_annotation(pod("loop", Some("fake-node-1")), "crashloop", "Always"),
    )
    .await
    .unwrap();

    let p = status_where(&pods, "pull", "ImagePullBackOff", |p| {
        waiting_reason(p) == "ImagePullBackOff"
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    let msg = container(&p)
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(
        msg.contains("example.org/nope:1"),
        "the message names the image: {msg}"
    );
    // The kubelet's Events say the same, as `kubectl describe` would show them.
    let events = Api::<Event>::namespaced(env.client.clone(), "s1");
    let lp = kube::api::ListParams::default().fields("involvedObject.name=pull,type=Warning");
    let reasons: Vec<String> = events
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"Failed".to_string()) && reasons.contains(&"BackOff".to_string()),
        "{reasons:?}"
    );

    let terminated = |p: &Pod| container(p).state.and_then(|s| s.terminated);
    let p = status_where(&pods, "oom", "OOMKilled", |p| phase(p) == "Failed").await;
    let t = terminated(&p).unwrap();
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137));

    let p = status_where(&pods, "exit3", "exit 3", |p| phase(p) == "Failed").await;
    let t = terminated(&p).unwrap();
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("Error"), 3));

    let p = status_where(&pods, "done", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(terminated(&p).unwrap().reason.as_deref(), Some("Completed"));

    let p = status_where(&pods, "loop", "CrashLoopBackOff after restarts", |p| {
        waiting_reason(p) == "CrashLoopBackOff" && container(p).restart_count >= 2
    })
    .await;
    let last = container(&p).last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 1);

    // A test hook turns a running Pod into an OOM kill.
    pods.create(&pp, &pod("hooked", Some("fake-node-1")))
        .await
        .unwrap();
    status_where(&pods, "hooked", "Running", |p| phase(p) == "Running").await;
    env.fake.set_behaviour("s1", "hooked", Behaviour::Oom);
    status_where(&pods, "hooked", "OOMKilled then CrashLoopBackOff", |p| {
        container(p)
            .last_state
            .and_then(|s| s.terminated)
            .and_then(|t| t.reason)
            .as_deref()
            == Some("OOMKilled")
    })
    .await;
}

#[tokio::test]
async fn active_deadline_seconds_ends_the_pod() {
    let (_env, pods) = setup(1).await;
    let mut p = pod("leased", Some("fake-node-1"));
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    pods.create(&PostParams::default(), &p).await.unwrap();
    status_where(&pods, "leased", "Running", |p| phase(p) == "Running").await;
    let p = status_where(&pods, "leased", "DeadlineExceeded", |p| {
        phase(p) == "Failed"
    })
    .await;
    assert_eq!(
        p.status.unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
}

#[tokio::test]
async fn unplaceable_pods_stay_pending_with_the_schedulers_reason() {
    let (env, pods) = setup(2).await;
    let nodes = Api::<Node>::all(env.client.clone());
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes
        .patch(
            "fake-node-1",
            &PatchParams::default(),
            &Patch::Strategic(&cordon),
        )
        .await
        .unwrap();
    let mut big = pod("big", None);
    big.spec.as_mut().unwrap().containers[0].resources =
        serde_json::from_value(json!({"limits": {"cpu": "64", "memory": "1Gi"}})).unwrap();
    pods.create(&PostParams::default(), &big).await.unwrap();
    let p = status_where(&pods, "big", "Unschedulable", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    let msg = cond.message.unwrap();
    assert!(msg.starts_with("0/2 nodes are available"), "{msg}");
    assert!(
        msg.contains("1 Insufficient cpu") && msg.contains("1 node(s) were unschedulable"),
        "{msg}"
    );

    // Without a nodeName, a Pod that fits is bound by the scheduler to a schedulable node that
    // matches its nodeSelector.
    let mut sel = pod("sel", None);
    sel.spec.as_mut().unwrap().node_selector = Some(
        [(
            "kubernetes.io/hostname".to_string(),
            "fake-node-2".to_string(),
        )]
        .into(),
    );
    pods.create(&PostParams::default(), &sel).await.unwrap();
    let p = status_where(&pods, "sel", "Running on node 2", |p| phase(p) == "Running").await;
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("fake-node-2"));

    // A nodeName naming no node leaves the Pod Pending.
    pods.create(&PostParams::default(), &pod("lost", Some("no-such-node")))
        .await
        .unwrap();
    let p = status_where(&pods, "lost", "Pending on a missing node", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| !c.is_empty())
    })
    .await;
    assert_eq!(phase(&p), "Pending");
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_pods_gracefully_then_itself() {
    let (env, pods) = setup(1).await;
    let c: Client = env.client.clone();
    pods.create(&PostParams::default(), &pod("p", Some("fake-node-1")))
        .await
        .unwrap();
    let rq: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}))
            .unwrap();
    Api::<ResourceQuota>::namespaced(c.clone(), "s1")
        .create(&PostParams::default(), &rq)
        .await
        .unwrap();
    status_where(&pods, "p", "Running", |p| phase(p) == "Running").await;

    let nss = Api::<Namespace>::all(c.clone());
    let ns = nss
        .delete("s1", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("namespace deletion is graceful");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let e = pods
        .create(&PostParams::default(), &pod("late", Some("fake-node-1")))
        .await
        .unwrap_err();
    assert_eq!(
        common::code(e),
        403,
        "no new content in a terminating namespace"
    );
    wait_for(10, "the namespace and its objects to be gone", || async {
        (nss.get_opt("s1").await.unwrap().is_none()).then_some(())
    })
    .await;
    assert!(
        env.fake.list("pods", Some("s1")).is_empty()
            && env.fake.list("resourcequotas", Some("s1")).is_empty()
    );
}

#[tokio::test]
async fn logs_follow_the_container_until_it_exits() {
    let (env, pods) = setup(1).await;
    pods.create(&PostParams::default(), &pod("p", Some("fake-node-1")))
        .await
        .unwrap();
    let e = pods.logs("p", &LogParams::default()).await.unwrap_err();
    assert_eq!(common::code(e), 400, "no logs before the container starts");
    status_where(&pods, "p", "Running", |p| phase(p) == "Running").await;
    env.fake
        .write_log("s1", "p", "main", "hello from the sliver")
        .unwrap();
    let whole = pods.logs("p", &LogParams::default()).await.unwrap();
    assert!(
        whole.contains("started from image slicebed/base:latest")
            && whole.contains("hello from the sliver"),
        "{whole}"
    );

    let lp = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("p", &lp).await.unwrap().lines();
    let mut seen = vec![];
    env.fake.set_behaviour("s1", "p", Behaviour::Exit(0));
    // Exit(0) under restartPolicy Always restarts; end it for good by deleting the Pod.
    let follow = async {
        let mut deleted = false;
        while let Some(l) = lines.try_next().await.unwrap() {
            if l.contains("exited with code 0") && !deleted {
                deleted = true;
                pods.delete("p", &DeleteParams::default()).await.unwrap();
            }
            seen.push(l);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), follow)
        .await
        .expect("the follow ends when the container does");
    assert!(seen.iter().any(|l| l.contains("hello from the sliver")));
    assert!(
        seen.iter().any(|l| l.contains("exited with code 0")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_node_that_stops_being_ready_freezes_its_pods_and_takes_no_new_ones() {
    let (env, pods) = setup(2).await;
    let pp = PostParams::default();
    pods.create(&pp, &pod("before", Some("fake-node-1")))
        .await
        .unwrap();
    pods.create(&pp, &pod("witness", Some("fake-node-2")))
        .await
        .unwrap();
    status_where(&pods, "before", "Running", |p| phase(p) == "Running").await;
    status_where(&pods, "witness", "Running", |p| phase(p) == "Running").await;
    env.fake.set_node_ready("fake-node-1", false).unwrap();
    let node = Api::<Node>::all(env.client.clone())
        .get("fake-node-1")
        .await
        .unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");

    let mut after = pod("after", None);
    after.spec.as_mut().unwrap().node_selector = Some(
        [(
            "kubernetes.io/hostname".to_string(),
            "fake-node-1".to_string(),
        )]
        .into(),
    );
    pods.create(&pp, &after).await.unwrap();
    let p = status_where(&pods, "after", "Unschedulable", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| !c.is_empty())
    })
    .await;
    let msg = p.status.unwrap().conditions.unwrap()[0]
        .message
        .clone()
        .unwrap();
    assert!(
        msg.contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        "{msg}"
    );

    // The same scripted exit for a Pod on each node: the one on the healthy node shows it; the
    // one on the silent node, processed by the same kubelet passes, does not change at all.
    let rv = pods.get("before").await.unwrap().metadata.resource_version;
    env.fake.set_behaviour("s1", "before", Behaviour::Exit(2));
    env.fake.set_behaviour("s1", "witness", Behaviour::Exit(2));
    let exited = |p: &Pod| {
        container(p)
            .last_state
            .and_then(|s| s.terminated)
            .is_some_and(|t| t.exit_code == 2)
    };
    status_where(&pods, "witness", "the witness's scripted exit", exited).await;
    assert_eq!(
        pods.get("before").await.unwrap().metadata.resource_version,
        rv,
        "a Pod on a silent node does not change"
    );

    // Back to Ready: the frozen Pod moves on and the waiting one is bound.
    env.fake.set_node_ready("fake-node-1", true).unwrap();
    status_where(&pods, "before", "the scripted exit", exited).await;
    status_where(&pods, "after", "Running", |p| phase(p) == "Running").await;
}
