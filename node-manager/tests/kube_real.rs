//! The Kubernetes backend against a REAL cluster, when `SLICEBED_TEST_KUBECONFIG` names a
//! kubeconfig (skipped with a notice otherwise). What only this suite covers: a real kubelet
//! pulling and running a public image, exec and copy over the API server's websocket proxy to
//! a real container runtime, logs of a real process, real quota admission of the objects the
//! backend writes, and the namespace controller's cleanup. NetworkPolicy enforcement depends on
//! the cluster's CNI and is not checked.
//!
//! - `SLICEBED_TEST_KUBECONFIG`: the kubeconfig (its identity needs the rights of
//!   deploy/kubernetes/agent-rbac.yaml plus `list nodes` to pick one);
//! - `SLICEBED_TEST_KUBE_NODE`: the node to run on (default: the first schedulable one);
//! - `SLICEBED_TEST_KUBE_IMAGE`: a public image with `sh` and `tar` (default `busybox:1.36`).
//!
//! Each test makes its own slice namespace and removes it; a failed run may leave one named
//! `sb-sbreal-…`, labelled `slicebed.dev/managed=true`.

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams};
use node_manager::domain::{ContainerPhase, Resources, RestartPolicy, SliverSpec};
use node_manager::runtime::kubernetes::{names, KubeRuntime};
use node_manager::runtime::{ExecSpec, LogsSpec, Output, Runtime};

/// The kubeconfig, or `None` after printing why the test is skipped.
fn kubeconfig() -> Option<std::path::PathBuf> {
    match std::env::var_os("SLICEBED_TEST_KUBECONFIG") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            eprintln!(
                "NOTICE: skipped: set SLICEBED_TEST_KUBECONFIG to a real cluster's kubeconfig \
                 to run the real-cluster suite"
            );
            None
        }
    }
}

/// A runtime for the chosen node of the cluster.
async fn runtime(kubeconfig: &std::path::Path) -> KubeRuntime {
    let node = match std::env::var("SLICEBED_TEST_KUBE_NODE") {
        Ok(n) if !n.is_empty() => n,
        _ => {
            let client = node_manager::runtime::kubernetes::client::client(Some(kubeconfig))
                .await
                .expect("a client for SLICEBED_TEST_KUBECONFIG");
            let nodes = Api::<Node>::all(client)
                .list(&ListParams::default())
                .await
                .expect("list nodes (or set SLICEBED_TEST_KUBE_NODE)");
            nodes
                .items
                .into_iter()
                .find(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
                .and_then(|n| n.metadata.name)
                .expect("a schedulable node")
        }
    };
    KubeRuntime::connect(Some(kubeconfig), format!("sb-{node}"), node)
        .await
        .expect("connect to the cluster")
        .0
}

fn spec(slice: &str) -> SliverSpec {
    SliverSpec {
        sliver_id: format!("{slice}-0"),
        slice: slice.into(),
        index: 0,
        image: std::env::var("SLICEBED_TEST_KUBE_IMAGE").unwrap_or_else(|_| "busybox:1.36".into()),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo started-by-slicebed; sleep 100000".into(),
        ],
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        resources: Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: RestartPolicy::Always,
        generation: 1,
        lease_expires_at: Some(SystemTime::now() + Duration::from_secs(1800)),
        image_digest: String::new(),
        pull: None,
    }
}

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000;
    format!("{prefix}{n}")
}

/// Waits (at most `secs`) for the sliver's Pod to run; a real pull can take a while.
async fn running(rt: &KubeRuntime, id: &str, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let o = rt.find_sliver(id).await.unwrap();
        if let Some(o) = &o {
            if o.phase == ContainerPhase::Running {
                return;
            }
            assert!(o.error.is_none(), "the sliver failed: {:?}", o.error);
        }
        assert!(
            Instant::now() < end,
            "sliver {id} not running after {secs}s: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_sliver_runs_execs_copies_logs_and_leaves_nothing_behind() {
    let Some(kc) = kubeconfig() else { return };
    let rt = runtime(&kc).await;
    let slice = unique("sbreal");
    let s = spec(&slice);
    let id = rt.create_and_start(&s).await.expect("create the sliver");
    running(&rt, &s.sliver_id, 180).await;

    // Exec over the API server's websocket: stdout and the exit code.
    let cmd = ExecSpec {
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo $GREETING-real; exit 3".into(),
        ],
        env: vec![("GREETING".into(), "hello".into())],
        ..Default::default()
    };
    let mut p = rt.exec(&id, cmd).await.expect("exec");
    let mut out = Vec::new();
    while let Some(c) = p.output.next().await {
        if let Output::Stdout(b) = c.unwrap() {
            out.extend_from_slice(&b);
        }
    }
    assert_eq!(String::from_utf8_lossy(&out).trim(), "hello-real");
    assert_eq!(rt.wait_exec(&p.id).await.unwrap(), Some(3));

    // Copy in and out: tar over exec.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(11);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "real.txt", &b"real bytes\n"[..])
        .unwrap();
    let bytes = bytes::Bytes::from(tar.into_inner().unwrap());
    rt.copy_in(&id, "/tmp", futures::stream::iter([bytes]).boxed())
        .await
        .expect("copy in");
    let back: Vec<u8> = rt
        .copy_out(&id, "/tmp/real.txt")
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    let mut a = tar::Archive::new(&back[..]);
    let mut entry = a.entries().unwrap().next().expect("one entry").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "real bytes\n");

    // Logs of the real process.
    let logs: Vec<u8> = rt
        .logs(
            &id,
            LogsSpec {
                tail: None,
                follow: false,
            },
        )
        .filter_map(|c| async move {
            match c {
                Ok(Output::Stdout(b)) => Some(b.to_vec()),
                _ => None,
            }
        })
        .concat()
        .await;
    assert!(
        String::from_utf8_lossy(&logs).contains("started-by-slicebed"),
        "{}",
        String::from_utf8_lossy(&logs)
    );

    // The quota the backend set is what the cluster admitted the Pod under.
    let client = node_manager::runtime::kubernetes::client::client(Some(&kc))
        .await
        .unwrap();
    let ns_name = id.split('/').next().unwrap().to_string();
    let quota =
        Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(client.clone(), &ns_name)
            .get("slicebed")
            .await
            .expect("the slice quota");
    let used = quota.status.and_then(|s| s.used).unwrap_or_default();
    assert_eq!(
        used.get("pods").map(|q| q.0.as_str()),
        Some("1"),
        "{used:?}"
    );

    // Delete: the Pod, then the slice network takes the namespace.
    rt.remove(&id).await.expect("remove");
    rt.remove_network(&slice)
        .await
        .expect("remove the namespace");
    let end = Instant::now() + Duration::from_secs(180);
    let namespaces = Api::<Namespace>::all(client);
    while namespaces.get_opt(&ns_name).await.unwrap().is_some() {
        assert!(
            Instant::now() < end,
            "namespace {ns_name} still there after 180s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(rt.find_sliver(&s.sliver_id).await.unwrap().is_none());
    assert_eq!(ns_name, names::namespace(&slice, &rt_node(&rt)));
}

/// The Kubernetes node a runtime speaks for (from its Slicebed node name `sb-<node>`).
fn rt_node(rt: &KubeRuntime) -> String {
    rt.node().trim_start_matches("sb-").to_string()
}
