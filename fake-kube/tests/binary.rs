//! The `slicebed-fake-kube` binary, as `slicectl dev up --kube-site` will run it: it writes a
//! kubeconfig that kube's Client uses as is, registers the nodes asked for with their labels,
//! and refuses a malformed label.

mod common;

use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

const BIN: &str = env!("CARGO_BIN_EXE_slicebed-fake-kube");

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_the_nodes_it_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let _child = Child(
        Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                "3",
                "--node-label",
                "slicebed.dev/site=kube-a",
            ])
            .arg("--kubeconfig-out")
            .arg(&kc)
            .stdout(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    common::wait_for(20, "the kubeconfig to be written", || async {
        kc.exists().then_some(())
    })
    .await;
    let client = common::client_from(&kc).await;
    let lp = ListParams::default().labels("slicebed.dev/site=kube-a");
    let nodes = Api::<Node>::all(client).list(&lp).await.unwrap();
    let names: Vec<_> = nodes
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, vec!["fake-node-1", "fake-node-2", "fake-node-3"]);

    let out = Command::new(BIN)
        .args(["--node-label", "no-equals-sign", "--kubeconfig-out"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not KEY=VALUE"));
}
