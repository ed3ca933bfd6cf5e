//! `slicectl dev up --kube-site`: beside its Docker site, the local testbed gets a site
//! `k8s-lab` whose three nodes are a fake Kubernetes cluster (`slicebed-fake-kube`) spoken for
//! by one cluster agent; the demo slice runs a sliver there as a Pod; `dev down` stops the
//! fake and the agent and removes everything.

use std::path::Path;
use std::process::{Command, Output};

use slicebed_tests::bin;

/// Runs slicectl with an isolated config dir.
fn ctl(cfg: &Path, args: &[&str]) -> Output {
    Command::new(bin("slicectl"))
        .args(args)
        .env("XDG_CONFIG_HOME", cfg)
        .env_remove("SLICECTL_CA_CERT")
        .env_remove("SLICECTL_SERVER")
        .env_remove("SLICECTL_TOKEN")
        .env_remove("SLICECTL_CONTEXT")
        .env_remove("SLICECTL_CONFIG")
        .output()
        .expect("run slicectl")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "slicectl failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `dev down` even when an assertion fails.
struct DevDown(std::path::PathBuf, std::path::PathBuf);

impl Drop for DevDown {
    fn drop(&mut self) {
        let _ = ctl(&self.0, &["dev", "down", "--dir", self.1.to_str().unwrap()]);
    }
}

/// The `host:port` of a kubeconfig's server (the fake writes it as JSON).
fn api_server(kubeconfig: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let url = v["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("a server in the kubeconfig");
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test]
async fn dev_up_kube_site_adds_a_cluster_whose_pods_are_slivers() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config");
    let dir = home.path().join("testbed");
    let dir_s = dir.to_str().unwrap();
    let up = ctl(
        &cfg,
        &["dev", "up", "--nodes", "1", "--kube-site", "--dir", dir_s],
    );
    let guard = DevDown(cfg.clone(), dir.clone());
    let out = ok(&up);
    assert!(out.contains("curl http://127.0.0.1:"), "{out}");

    // The cluster's three nodes are nodes of k8s-lab, members of cluster lab.
    let nodes: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&cfg, &["-o", "json", "node", "list"]))).unwrap();
    let members: Vec<&serde_json::Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["cluster"] == "lab")
        .collect();
    assert_eq!(members.len(), 3, "{nodes:#}");
    for n in &members {
        assert_eq!(n["site"], "k8s-lab", "{n}");
        assert_eq!(n["state"], "ready", "{n}");
    }
    // The demo slice runs on both sites, one sliver of it on a member.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&cfg, &["-o", "json", "slice", "show", "demo"]))).unwrap();
    let slivers = v["slivers"].as_array().unwrap();
    assert_eq!(slivers.len(), 2, "{v:#}");
    assert!(slivers.iter().all(|s| s["state"] == "running"), "{v:#}");
    let on_kube = slivers
        .iter()
        .find(|s| s["site"] == "k8s-lab")
        .expect("a sliver on the Kubernetes site");
    assert!(
        on_kube["node"]
            .as_str()
            .unwrap()
            .starts_with("lab-fake-node-"),
        "{on_kube}"
    );
    // ... as a Pod the fake holds, when kubectl is there to ask.
    let kubeconfig = dir.join("kube").join("kubeconfig");
    let server = api_server(&kubeconfig);
    match Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-A", "-o", "name"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let pods = String::from_utf8_lossy(&o.stdout);
            assert_eq!(pods.lines().count(), 1, "one Pod: {pods}");
        }
        _ if slicebed_tests::kube::skip_without_kubectl() => {
            eprintln!("NOTICE: the Pod itself is not checked")
        }
        Ok(o) => panic!(
            "kubectl get pods failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("kubectl: {e}"),
    }

    drop(guard);
    assert!(!dir.exists(), "dev down removes its directory");
    assert!(
        std::net::TcpStream::connect(&server).is_err(),
        "the fake API server at {server} still answers after dev down"
    );
}
