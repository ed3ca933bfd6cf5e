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
