//! Shared by the fake's tests: a fake on a free port, and kube's real `Client` built from the
//! kubeconfig file the fake writes (no special client code), plus bounded polling.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use slicebed_fake_kube::{Config, FakeKube};

pub struct Env {
    pub fake: FakeKube,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn kubeconfig_path(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

/// kube's Client for the kubeconfig at `path`, exactly as a product would build it.
pub async fn client_from(path: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("the fake's kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the fake's kubeconfig");
    Client::try_from(config).expect("client")
}

pub async fn start_with(config: Config) -> Env {
    let fake = FakeKube::start(config).await.expect("fake starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).expect("kubeconfig written");
    let client = client_from(&path).await;
    Env { fake, client, dir }
}

pub async fn start(nodes: usize) -> Env {
    start_with(Config::with_nodes(nodes)).await
}

/// Polls `f` every 25 ms until it returns Some, failing with `what` after `secs` seconds.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"slicebed.dev/slice": name}}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// A Guaranteed Pod pinned to `node` (None: left to the scheduler).
pub fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut p = json!({
        "metadata": {"name": name, "labels": {"slicebed.dev/sliver": name}},
        "spec": {
            "restartPolicy": "Always",
            "containers": [{"name": "main", "image": "slicebed/base:latest", "command": ["sleep", "infinity"],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": "64Mi"}}}],
        },
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

/// The HTTP code of a kube API error.
pub fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub const BASE_IMAGE: &str = "slicebed/base:latest";

/// True when Docker answers and the base image is there (built from busybox-static if not).
pub fn docker_ready() -> bool {
    let ok = |c: &mut std::process::Command| c.output().is_ok_and(|o| o.status.success());
    if !ok(std::process::Command::new("docker").arg("info")) {
        assert!(
            std::env::var_os("SLICEBED_REQUIRE_DOCKER").is_none(),
            "SLICEBED_REQUIRE_DOCKER is set but Docker does not answer"
        );
        eprintln!("NOTICE: no Docker engine; skipping the exec tests");
        return false;
    }
    if ok(std::process::Command::new("docker").args(["image", "inspect", BASE_IMAGE])) {
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("busybox-static for the base image");
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n").unwrap();
    assert!(
        ok(std::process::Command::new("docker")
            .args(["build", "-q", "-t", BASE_IMAGE])
            .arg(dir.path())),
        "building {BASE_IMAGE}"
    );
    true
}
