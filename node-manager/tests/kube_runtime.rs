//! The Kubernetes backend against the in-repo fake API server (real HTTPS on loopback, reached
//! through the kubeconfig it writes): the objects it stores for a sliver, the states scripted
//! kubelet failures map to, adoption by a restarted agent, removal, logs, exec and copy.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use node_manager::domain::{
    ContainerPhase, ObservedSliver, PortMapping, PullAccess, Resources, RestartPolicy, SliverSpec,
};
use node_manager::runtime::kubernetes::{names, KubeRuntime};
use node_manager::runtime::{ExecSpec, LogsSpec, Output, Runtime};
use slicebed_fake_kube::{Behaviour, Config, FakeKube};
use tempfile::TempDir;

struct Env {
    fake: FakeKube,
    _dir: TempDir,
    kubeconfig: std::path::PathBuf,
}

async fn env(docker_exec: bool) -> Env {
    let mut cfg = Config::with_nodes(2);
    cfg.docker_exec = docker_exec;
    let fake = FakeKube::start(cfg).await.expect("fake API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    Env {
        fake,
        _dir: dir,
        kubeconfig,
    }
}

async fn runtime(e: &Env, kube_node: &str) -> KubeRuntime {
    KubeRuntime::connect(
        Some(&e.kubeconfig),
        format!("sb-{kube_node}"),
        kube_node.to_string(),
    )
    .await
    .expect("connect")
    .0
}

fn spec(id: &str, index: u32, cpu: i64, mem: i64) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: "web".into(),
        index,
        image: "slicebed/base:latest".into(),
        command: vec!["sh".into(), "-c".into(), "sleep 100000".into()],
        env: [("GREETING".to_string(), "hi".to_string())].into(),
        resources: Resources {
            cpu_millis: cpu,
            memory_bytes: mem,
            disk_bytes: 0,
        },
        ports: vec![PortMapping {
            name: "http".into(),
            container_port: 8080,
            host_port: 30080 + index as u16,
        }],
        restart: RestartPolicy::Always,
        generation: 1,
        lease_expires_at: Some(*LEASE_END),
        image_digest: String::new(),
        pull: None,
    }
}

/// One lease end for every spec of a test run, so a sliver's Pod name is the same each time.
static LEASE_END: std::sync::LazyLock<SystemTime> = std::sync::LazyLock::new(|| {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs + 3600)
});

/// The Pod name of sliver `id` (generation 1, the test lease).
fn pod_of(id: &str) -> String {
    names::pod_name(&spec(id, 0, 1, 1))
}

/// Polls `f` until it yields `Some`, for at most 15 s.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn state_of(
    rt: &KubeRuntime,
    id: &str,
    pred: impl Fn(&ObservedSliver) -> bool,
) -> ObservedSliver {
    until(&format!("sliver {id} in the expected state"), || async {
        rt.find_sliver(id).await.unwrap().filter(|o| pred(o))
    })
    .await
}

#[tokio::test]
async fn a_sliver_is_a_hardened_guaranteed_pod_in_a_quota_bounded_isolated_namespace() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    let a = rt
        .create_and_start(&spec("s-a", 0, 500, 256 << 20))
        .await
        .unwrap();
    let b = rt
        .create_and_start(&spec("s-b", 1, 250, 128 << 20))
        .await
        .unwrap();
    assert_eq!(a, format!("sb-web-fake-node-1/{}", pod_of("s-a")));
    let pod = e
        .fake
        .get("pods", "sb-web-fake-node-1", &pod_of("s-a"))
        .expect("pod stored");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"]["cpu"], "500m");
    assert_eq!(c["resources"]["limits"]["memory"], (256 << 20).to_string());
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(!sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "SYS_ADMIN" || c == "NET_ADMIN"));
    assert_eq!(pod["spec"]["hostNetwork"], false);
    assert_eq!(pod["spec"]["hostPID"], false);
    assert!(pod["spec"]
        .get("volumes")
        .is_none_or(|v| v.as_array().is_none_or(|v| v.is_empty())));
    assert_eq!(
        pod["spec"]["nodeSelector"]["kubernetes.io/hostname"],
        "fake-node-1"
    );
    assert!(pod["spec"]["activeDeadlineSeconds"].as_i64().unwrap() > 3500);
    assert_eq!(c["ports"][0]["hostPort"], 30080);
    assert_eq!(pod["metadata"]["labels"]["slicebed.dev/sliver"], "s-a");
    let q = e
        .fake
        .get("resourcequotas", "sb-web-fake-node-1", "slicebed")
        .expect("quota");
    assert_eq!(q["spec"]["hard"]["pods"], "2");
    assert_eq!(q["spec"]["hard"]["limits.cpu"], "750m");
    assert_eq!(
        q["spec"]["hard"]["requests.memory"],
        (384 << 20).to_string()
    );
    assert!(e
        .fake
        .get("limitranges", "sb-web-fake-node-1", "slicebed")
        .is_some());
    let pol = e
        .fake
        .get("networkpolicies", "sb-web-fake-node-1", "slicebed")
        .expect("isolation policy");
    assert_eq!(
        pol["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]
            ["slicebed.dev/slice"],
        "web"
    );
    assert!(e
        .fake
        .get("networkpolicies", "sb-web-fake-node-1", "published-s-a")
        .is_some());
    let ns = e
        .fake
        .get("namespaces", "", "sb-web-fake-node-1")
        .expect("namespace");
    assert_eq!(ns["metadata"]["labels"]["slicebed.dev/slice"], "web");
    let o = state_of(&rt, "s-a", |o| o.phase == ContainerPhase::Running).await;
    assert_eq!(o.container_id, a);
    assert_eq!(o.limits.cpu_millis, 500);
    state_of(&rt, "s-b", |o| o.phase == ContainerPhase::Running).await;
    assert_eq!(rt.list_networks().await.unwrap(), vec!["web".to_string()]);
    let _ = b;
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_pods_and_never_sees_another_nodes() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    for (i, id) in ["s-1", "s-2"].iter().enumerate() {
        rt.create_and_start(&spec(id, i as u32, 100, 64 << 20))
            .await
            .unwrap();
    }
    drop(rt);
    let again = runtime(&e, "fake-node-1").await;
    let mut seen: Vec<String> = again
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.sliver_id)
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["s-1", "s-2"]);
    // Applying the same sliver again (a reconcile pass after the restart) makes no duplicate.
    again
        .create_and_start(&spec("s-1", 0, 100, 64 << 20))
        .await
        .unwrap();
    assert_eq!(e.fake.list("pods", Some("sb-web-fake-node-1")).len(), 2);
    let other = runtime(&e, "fake-node-2").await;
    assert!(other.list().await.unwrap().is_empty());
    assert!(other.find_sliver("s-1").await.unwrap().is_none());
    assert!(other
        .inspect(&format!("sb-web-fake-node-1/{}", pod_of("s-1")))
        .await
        .unwrap()
        .is_none());
    other
        .remove(&format!("sb-web-fake-node-1/{}", pod_of("s-1")))
        .await
        .unwrap();
    assert!(
        e.fake
            .get("pods", "sb-web-fake-node-1", &pod_of("s-1"))
            .is_some(),
        "another node's agent removed a Pod"
    );
}

#[tokio::test]
async fn scripted_kubelet_failures_become_states_a_researcher_can_act_on() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    let ns = "sb-web-fake-node-1";
    for (id, b) in [
        ("pull", Behaviour::ImagePullFail),
        ("oom", Behaviour::Oom),
        ("crash", Behaviour::CrashLoop),
    ] {
        e.fake.set_behaviour(ns, &pod_of(id), b);
    }
    let mut never = spec("oom", 1, 100, 64 << 20);
    never.restart = RestartPolicy::Never;
    rt.create_and_start(&spec("pull", 0, 100, 64 << 20))
        .await
        .unwrap();
    rt.create_and_start(&never).await.unwrap();
    rt.create_and_start(&spec("crash", 2, 100, 64 << 20))
        .await
        .unwrap();
    let p = state_of(&rt, "pull", |o| o.error.is_some()).await;
    let msg = p.error.unwrap();
    assert!(
        msg.starts_with("image slicebed/base:latest cannot be pulled by the cluster"),
        "{msg}"
    );
    assert_eq!(p.phase, ContainerPhase::EXITED);
    // Reported as ended (failed, with the reason) but not broken: the kubelet keeps
    // retrying the pull, so the Pod is kept rather than replaced on every pass.
    assert_eq!(p.exit_code, None);
    let o = state_of(&rt, "oom", |o| o.phase == ContainerPhase::EXITED).await;
    assert!(o.oom_killed);
    assert_eq!(o.exit_code, Some(137));
    assert!(o.error.unwrap().contains("OOMKilled"));
    let c = state_of(&rt, "crash", |o| {
        o.error
            .as_deref()
            .is_some_and(|m| m.contains("CrashLoopBackOff"))
    })
    .await;
    assert!(c.error.unwrap().contains("exit code 1"));
    assert_eq!(c.phase, ContainerPhase::RESTARTING);
    // A cordoned node takes no new sliver: the scheduler's words reach the researcher.
    e.fake.set_unschedulable("fake-node-1", true).unwrap();
    rt.create_and_start(&spec("late", 3, 100, 64 << 20))
        .await
        .unwrap();
    let l = state_of(&rt, "late", |o| o.error.is_some()).await;
    let msg = l.error.unwrap();
    assert!(
        msg.contains("cannot place the sliver") && msg.contains("unschedulable"),
        "{msg}"
    );
}

#[tokio::test]
async fn removing_slivers_shrinks_the_quota_the_network_takes_the_namespace_and_logs_follow() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    let a = rt
        .create_and_start(&spec("s-a", 0, 200, 64 << 20))
        .await
        .unwrap();
    let b = rt
        .create_and_start(&spec("s-b", 1, 300, 64 << 20))
        .await
        .unwrap();
    state_of(&rt, "s-a", |o| o.phase == ContainerPhase::Running).await;
    let mut logs = rt.logs(
        &a,
        LogsSpec {
            tail: None,
            follow: true,
        },
    );
    let mut text = String::new();
    while !text.contains("tick 2") {
        let chunk = tokio::time::timeout(Duration::from_secs(15), logs.next())
            .await
            .expect("a followed log keeps coming")
            .expect("log open")
            .unwrap();
        let Output::Stdout(b) = chunk else {
            panic!("stderr in a Pod log")
        };
        text.push_str(&String::from_utf8_lossy(&b));
    }
    rt.remove(&a).await.unwrap();
    assert!(e
        .fake
        .get("networkpolicies", "sb-web-fake-node-1", "published-s-a")
        .is_none());
    let q = e
        .fake
        .get("resourcequotas", "sb-web-fake-node-1", "slicebed")
        .unwrap();
    assert_eq!(q["spec"]["hard"]["limits.cpu"], "300m");
    until("the removed Pod gone", || async {
        e.fake
            .get("pods", "sb-web-fake-node-1", &pod_of("s-a"))
            .is_none()
            .then_some(())
    })
    .await;
    assert!(e.fake.get("namespaces", "", "sb-web-fake-node-1").is_some());
    rt.remove(&b).await.unwrap();
    // The namespace outlives its Pods (a replacement goes on in it) until the reconciler,
    // seeing nothing of the slice desired on the node, removes the slice network.
    assert!(e.fake.get("namespaces", "", "sb-web-fake-node-1").is_some());
    assert_eq!(rt.list_networks().await.unwrap(), vec!["web".to_string()]);
    rt.remove_network("web").await.unwrap();
    until("the namespace gone with the slice network", || async {
        e.fake
            .get("namespaces", "", "sb-web-fake-node-1")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(rt.list().await.unwrap().is_empty());
    rt.remove(&b).await.unwrap();
}

#[tokio::test]
async fn exec_and_copy_run_in_the_pod_when_the_fake_has_docker() {
    if std::process::Command::new("docker")
        .arg("info")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("NOTICE: skipped: Docker is not reachable, the fake cannot serve exec");
        return;
    }
    let e = env(true).await;
    let rt = runtime(&e, "fake-node-1").await;
    let id = rt
        .create_and_start(&spec("x", 0, 100, 64 << 20))
        .await
        .unwrap();
    state_of(&rt, "x", |o| o.phase == ContainerPhase::Running).await;
    let cmd = ExecSpec {
        command: vec!["sh".into(), "-c".into(), "echo $GREETING-$0; exit 3".into()],
        env: vec![("GREETING".into(), "hello".into())],
        ..Default::default()
    };
    let mut p = rt.exec(&id, cmd).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = p.output.next().await {
        if let Output::Stdout(b) = c.unwrap() {
            out.extend_from_slice(&b);
        }
    }
    assert_eq!(String::from_utf8_lossy(&out).trim(), "hello-sh");
    assert_eq!(rt.wait_exec(&p.id).await.unwrap(), Some(3));
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "note.txt", &b"hello"[..]).unwrap();
    let bytes = bytes::Bytes::from(tar.into_inner().unwrap());
    rt.copy_in(&id, "/tmp", futures::stream::iter([bytes]).boxed())
        .await
        .unwrap();
    let back: Vec<u8> = rt
        .copy_out(&id, "/tmp/note.txt")
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    let mut a = tar::Archive::new(&back[..]);
    let mut entry = a.entries().unwrap().next().expect("one entry").unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
    assert_eq!(s, "hello");
    let err = rt
        .copy_in(&id, "/nope", futures::stream::empty().boxed())
        .await
        .unwrap_err();
    assert!(err.message().contains("not a directory"), "{err}");
}

#[tokio::test]
async fn a_missing_node_or_kubeconfig_is_refused_naming_the_flag() {
    let e = env(false).await;
    let err = KubeRuntime::connect(Some(&e.kubeconfig), "sb".into(), "no-such-node".into())
        .await
        .err()
        .expect("an unknown node is refused");
    assert!(
        err.to_string().contains("--kube-node \"no-such-node\""),
        "{err}"
    );
    let missing = e._dir.path().join("absent");
    let err = KubeRuntime::connect(Some(&missing), "sb".into(), "fake-node-1".into())
        .await
        .err()
        .expect("an unreadable kubeconfig is refused");
    assert!(err.to_string().starts_with("--kubeconfig "), "{err}");
    let (_, facts) = KubeRuntime::connect(Some(&e.kubeconfig), "sb".into(), "fake-node-1".into())
        .await
        .unwrap();
    assert!(facts.allocatable.cpu_millis > 0 && facts.allocatable.memory_bytes > 0);
    assert!(facts.address.is_some_and(|a| a.is_loopback()));
}

/// A spec pinned to a digest of the service's store, with the pull credential the service
/// sends for it.
fn pinned(id: &str) -> SliverSpec {
    let mut s = spec(id, 0, 100, 64 << 20);
    s.image = "alice/iperf:v1".into();
    s.image_digest = format!("sha256:{}", "b".repeat(64));
    s.pull = Some(PullAccess {
        registry: "10.0.0.5:5000".into(),
        repository: "alice/iperf".into(),
        username: "slicebed-pull".into(),
        password: "sbp_slice-id.1.mac".into(),
        expires_at: Some(*LEASE_END),
    });
    s
}

#[tokio::test]
async fn a_pinned_sliver_pulls_by_digest_with_its_namespace_pull_secret() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    let s = pinned("s-p");
    rt.create_and_start(&s).await.unwrap();
    let ns = "sb-web-fake-node-1";
    let pod = e.fake.get("pods", ns, &pod_of("s-p")).expect("pod stored");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        format!("10.0.0.5:5000/alice/iperf@sha256:{}", "b".repeat(64)),
        "by digest from the service's registry, never by tag"
    );
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        serde_json::json!([{"name": "slicebed-pull"}])
    );
    let secret = e
        .fake
        .get("secrets", ns, "slicebed-pull")
        .expect("the pull secret in the slice namespace");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["metadata"]["labels"]["slicebed.dev/node"],
        "fake-node-1"
    );
    use base64::Engine;
    let doc: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let auth = &doc["auths"]["10.0.0.5:5000"];
    assert_eq!(auth["username"], "slicebed-pull");
    assert_eq!(auth["password"], "sbp_slice-id.1.mac");
    assert_eq!(
        auth["auth"],
        base64::engine::general_purpose::STANDARD.encode("slicebed-pull:sbp_slice-id.1.mac")
    );
    // An unpinned sliver of the same slice names no secret; the secret leaves with the slice.
    rt.create_and_start(&spec("s-u", 1, 100, 64 << 20))
        .await
        .unwrap();
    let plain = e.fake.get("pods", ns, &pod_of("s-u")).unwrap();
    assert!(plain["spec"].get("imagePullSecrets").is_none());
    assert_eq!(
        plain["spec"]["containers"][0]["image"],
        "slicebed/base:latest"
    );
    rt.remove_network("web").await.unwrap();
    until("the pull secret gone with the namespace", || async {
        e.fake
            .get("secrets", ns, "slicebed-pull")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_cluster_ends_a_pod_at_its_lease_end_with_no_agent_left() {
    let e = env(false).await;
    let rt = runtime(&e, "fake-node-1").await;
    let mut s = spec("s-end", 0, 100, 64 << 20);
    s.lease_expires_at = Some(SystemTime::now() + Duration::from_secs(2));
    rt.create_and_start(&s).await.unwrap();
    let name = names::pod_name(&s);
    drop(rt); // no agent from here on: only the cluster can end it
    let ended = until("the Pod ended by its deadline", || async {
        e.fake
            .get("pods", "sb-web-fake-node-1", &name)
            .filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(ended["status"]["reason"], "DeadlineExceeded");
}

#[tokio::test]
async fn a_renewed_lease_replaces_the_pod_with_one_that_outlives_the_old_end() {
    use node_manager::reconciler::Reconciler;
    use std::collections::BTreeMap;
    let e = env(false).await;
    let mut rec = Reconciler::new(runtime(&e, "fake-node-1").await);
    let mut s = spec("s-r", 0, 100, 64 << 20);
    let old_end = SystemTime::now() + Duration::from_secs(3);
    s.lease_expires_at = Some(old_end);
    let mut desired = BTreeMap::from([(s.sliver_id.clone(), s.clone())]);
    let running = |rec: &Reconciler<KubeRuntime>| {
        let rt = rec.runtime().clone();
        async move {
            rt.find_sliver("s-r")
                .await
                .unwrap()
                .filter(|o| o.phase == ContainerPhase::Running)
        }
    };
    rec.pass(Some(&desired)).await.unwrap();
    let first = until("the first Pod running", || running(&rec)).await;
    // Renewed: a Pod's activeDeadlineSeconds can only shrink, so the agent replaces the Pod
    // with one whose deadline is the new lease end.
    let new_end = SystemTime::now() + Duration::from_secs(3600);
    s.lease_expires_at = Some(new_end);
    desired.insert(s.sliver_id.clone(), s.clone());
    let give_up = Instant::now() + Duration::from_secs(15);
    let mut said = Vec::new();
    let second = loop {
        said.extend(rec.pass(Some(&desired)).await.unwrap_or_default());
        if let Some(o) = running(&rec)
            .await
            .filter(|o| o.container_id != first.container_id)
        {
            break o;
        }
        assert!(
            Instant::now() < give_up,
            "timed out waiting for a replacement Pod running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        second.container_id,
        format!("sb-web-fake-node-1/{}", names::pod_name(&s))
    );
    // The researcher is told why the sliver restarts, once, as its state's message.
    let told: Vec<_> = said
        .iter()
        .filter(|r| r.message == node_manager::reconciler::RENEWAL_RESTART)
        .collect();
    assert_eq!(told.len(), 1, "{said:?}");
    assert_eq!(told[0].state, node_manager::domain::ReportedState::Creating);
    let pod = e
        .fake
        .get("pods", "sb-web-fake-node-1", &names::pod_name(&s))
        .unwrap();
    let deadline = pod["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert!(
        deadline > 3000,
        "the new deadline reaches the new lease: {deadline}"
    );
    // Past the old end, the sliver still runs, and only one Pod of it is left.
    until("the old lease end passed", || async {
        (SystemTime::now() > old_end + Duration::from_secs(1)).then_some(())
    })
    .await;
    let _ = rec.pass(Some(&desired)).await;
    let now = rec.runtime().find_sliver("s-r").await.unwrap().unwrap();
    assert_eq!(now.container_id, second.container_id);
    assert_eq!(now.phase, ContainerPhase::Running);
    until("the old Pod gone", || async {
        (e.fake.list("pods", Some("sb-web-fake-node-1")).len() == 1).then_some(())
    })
    .await;
}
