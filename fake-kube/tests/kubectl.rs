//! kubectl, the reference client, against the fake: discovery, listing nodes and reading a Pod
//! with nothing but the kubeconfig the fake wrote. Skipped with a notice where kubectl is not
//! installed (Debian: `apt-get install kubectl`), unless SLICEBED_REQUIRE_KUBECTL is set.

mod common;

use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

fn kubectl() -> Option<&'static str> {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SLICEBED_REQUIRE_KUBECTL").is_none(),
            "SLICEBED_REQUIRE_KUBECTL is set but kubectl is not installed"
        );
        eprintln!(
            "NOTICE: kubectl is not installed; skipping the kubectl test (apt-get install kubectl)"
        );
        return None;
    }
    Some("kubectl")
}

#[tokio::test]
async fn kubectl_lists_nodes_and_reads_pods_from_the_fake() {
    let Some(bin) = kubectl() else { return };
    let env = common::start(2).await;
    common::namespace(&env.client, "s1").await;
    Api::<Pod>::namespaced(env.client.clone(), "s1")
        .create(
            &PostParams::default(),
            &common::pod("p", Some("fake-node-2")),
        )
        .await
        .unwrap();
    let kc = env.kubeconfig_path();
    let run = |args: &[&str]| {
        let kc = kc.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new(bin)
                    .arg("--kubeconfig")
                    .arg(&kc)
                    .args(&args)
                    .output()
                    .expect("kubectl runs");
                assert!(
                    out.status.success(),
                    "kubectl {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).to_string()
            })
            .await
            .unwrap()
        }
    };
    let nodes = run(&["get", "nodes", "-o", "name"]).await;
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        vec!["node/fake-node-1", "node/fake-node-2"]
    );
    let node = run(&[
        "get",
        "pod",
        "p",
        "-n",
        "s1",
        "-o",
        "jsonpath={.spec.nodeName}",
    ])
    .await;
    assert_eq!(node, "fake-node-2");
    run(&["cordon", "fake-node-1"]).await;
    assert_eq!(
        env.fake.get("nodes", "", "fake-node-1").unwrap()["spec"]["unschedulable"],
        true
    );
}

/// kubectl exec (exit codes, stdin) and kubectl cp both ways, over the fake's websocket exec.
#[tokio::test]
async fn kubectl_exec_and_cp_work_over_the_fakes_websocket_exec() {
    let Some(bin) = kubectl() else { return };
    if !common::docker_ready() {
        return;
    }
    let mut config = slicebed_fake_kube::Config::with_nodes(1);
    config.docker_exec = true;
    let env = common::start_with(config).await;
    common::namespace(&env.client, "s1").await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "s1");
    let mut p = common::pod("p", Some("fake-node-1"));
    p.spec.as_mut().unwrap().containers[0].command = Some(vec!["sleep".into(), "3600".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    common::wait_for(10, "the pod to run", || async {
        (pods.get("p").await.ok()?.status?.phase? == "Running").then_some(())
    })
    .await;
    let kc = env.kubeconfig_path();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "copied in\n").unwrap();
    let (kc2, d) = (kc.clone(), dir.path().to_path_buf());
    let outs = tokio::task::spawn_blocking(move || {
        let k = |args: &[&str], stdin: Option<&str>| {
            let mut c = Command::new(bin);
            c.arg("--kubeconfig")
                .arg(&kc2)
                .args(["-n", "s1"])
                .args(args)
                .current_dir(&d);
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().expect("kubectl runs");
            {
                use std::io::Write;
                let mut w = child.stdin.take().unwrap();
                if let Some(s) = stdin {
                    w.write_all(s.as_bytes()).unwrap();
                }
            }
            child.wait_with_output().unwrap()
        };
        vec![
            k(&["exec", "p", "--", "sh", "-c", "echo out; exit 4"], None),
            k(&["exec", "-i", "p", "--", "cat"], Some("through stdin\n")),
            k(&["cp", "in.txt", "p:/tmp/in.txt"], None),
            k(&["cp", "p:/tmp/in.txt", "back.txt"], None),
        ]
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        outs[0].status.code(),
        Some(4),
        "kubectl exec passes the exit code on"
    );
    assert_eq!(text(&outs[0]), "out\n");
    assert!(
        outs[1].status.success(),
        "{}",
        String::from_utf8_lossy(&outs[1].stderr)
    );
    assert_eq!(text(&outs[1]), "through stdin\n");
    for o in &outs[2..] {
        assert!(
            o.status.success(),
            "kubectl cp: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("back.txt")).unwrap(),
        "copied in\n"
    );
}
