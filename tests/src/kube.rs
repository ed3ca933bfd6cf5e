//! A Kubernetes site for black-box tests: the fake API server's real binary (reached through the
//! kubeconfig it writes), a cluster enrolled with `node-manager enroll --cluster`, its agent
//! (`node-manager run --runtime kubernetes`), and `kubectl` to look at what the fake stored.
//!
//! Nothing here reads the fake's memory: what a test sees is what a site admin would see with
//! `kubectl`, and what a researcher sees with `slicectl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use slicebed_proto::v1 as pb;

use crate::{bin, wait_for, Clients, Service};

/// Whether `kubectl` can run here (tests that need it skip with a notice otherwise).
pub fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The fake API server as a child process; stopped with SIGTERM on drop, so it removes the
/// Docker containers behind its Pods (`--docker-exec`).
pub struct FakeKubeProcess {
    child: Child,
    pub kubeconfig: PathBuf,
}

impl FakeKubeProcess {
    /// Starts `slicebed-fake-kube` with `nodes` nodes; `docker_exec` backs every running Pod
    /// with a Docker container of its image, so exec, copy and logs are real.
    pub async fn start(dir: &Path, nodes: u32, docker_exec: bool) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        let mut cmd = Command::new(bin("slicebed-fake-kube"));
        cmd.args(["--listen", "127.0.0.1:0", "--nodes", &nodes.to_string()])
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if docker_exec {
            cmd.arg("--docker-exec");
        }
        let child = cmd.spawn().expect("spawn the fake API server");
        let me = FakeKubeProcess { child, kubeconfig };
        wait_for("the fake's kubeconfig", Duration::from_secs(20), || async {
            me.kubeconfig.exists().then_some(())
        })
        .await;
        me
    }

    /// `kubectl --kubeconfig … ARGS -o json`, parsed; panics if kubectl fails.
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .args(["-o", "json"])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("kubectl's JSON")
    }

    /// The objects of `kind` in every namespace (`pods`, `namespaces`…) matching `selector`.
    pub fn items(&self, kind: &str, selector: &str) -> Vec<serde_json::Value> {
        let mut args = vec!["get", kind, "--all-namespaces"];
        if !selector.is_empty() {
            args.extend(["-l", selector]);
        }
        self.kubectl_json(&args)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeKubeProcess {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the fake then removes the containers behind its Pods.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A Kubernetes agent: enrolled once, run (and killed, and run again) as a child process.
/// Either a cluster agent speaking for every node of the cluster ([`KubeAgent::cluster`]), or
/// the single-node mode, an ordinary node enrolled for one Kubernetes node
/// ([`KubeAgent::single_node`]).
pub struct KubeAgent {
    pub state: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    /// `--kube-node`, in single-node mode.
    kube_node: Option<String>,
    child: Option<Child>,
}

impl KubeAgent {
    /// Enrolls cluster `name` into `site` (`node-manager enroll --cluster`, lending `ports` on
    /// every member) with state under `dir`, then runs its agent against `kubeconfig`.
    pub async fn cluster(
        svc: &Service,
        admin: &Clients,
        site: &str,
        name: &str,
        ports: (u32, u32),
        dir: &Path,
        kubeconfig: &Path,
    ) -> Self {
        let token = crate::nm::enrollment_token(admin, site).await;
        let state = dir.join(format!("{name}-state"));
        let mut c = Command::new(bin("node-manager"));
        c.arg("enroll")
            .args(["--server", &svc.url(), "--token", &token, "--name", name])
            .arg("--state-dir")
            .arg(&state)
            .args(["--cluster", "--ports", &format!("{}-{}", ports.0, ports.1)]);
        if let Some(ca) = svc.ca_cert() {
            c.arg("--ca-cert").arg(ca);
        }
        let out = c.output().expect("run node-manager enroll --cluster");
        assert!(
            out.status.success(),
            "enroll --cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut agent = KubeAgent {
            log: dir.join(format!("{name}-agent.log")),
            state,
            kubeconfig: kubeconfig.to_path_buf(),
            kube_node: None,
            child: None,
        };
        agent.run();
        agent
    }

    /// Enrolls node `name` into `site` as an ordinary node lending `ports`, then runs its agent
    /// for the Kubernetes node `kube_node` only (`--kube-node`).
    #[allow(clippy::too_many_arguments)]
    pub async fn single_node(
        svc: &Service,
        admin: &Clients,
        site: &str,
        name: &str,
        kube_node: &str,
        ports: (u32, u32),
        dir: &Path,
        kubeconfig: &Path,
    ) -> Self {
        let token = crate::nm::enrollment_token(admin, site).await;
        let state = dir.join(format!("{name}-state"));
        let out = crate::nm::enroll_cmd(svc, &token, name, &state, ports)
            .output()
            .expect("run node-manager enroll");
        assert!(
            out.status.success(),
            "enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut agent = KubeAgent {
            log: dir.join(format!("{name}-agent.log")),
            state,
            kubeconfig: kubeconfig.to_path_buf(),
            kube_node: Some(kube_node.to_string()),
            child: None,
        };
        agent.run();
        agent
    }

    /// Starts (or restarts) `node-manager run --runtime kubernetes` on the enrollment.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin("node-manager"));
        cmd.arg("run")
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--runtime", "kubernetes"])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig);
        if let Some(n) = &self.kube_node {
            cmd.args(["--kube-node", n]);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the Kubernetes agent");
        self.child = Some(child);
    }

    /// SIGKILL: no cleanup, the cluster keeps whatever the agent made.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's log so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KubeAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the real `slicectl` with `token` against `svc` (no config file of the user's).
pub fn slicectl(svc: &Service, token: &str, args: &[&str]) -> Output {
    Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", token])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .env("SLICECTL_CA_CERT", &crate::service::test_ca().0)
        .output()
        .expect("run slicectl")
}

/// The Slicebed node the fake's first Kubernetes node becomes in cluster `lab`.
pub const MEMBER: &str = "lab-fake-node-1";

/// True (after a notice) when `kubectl` is missing and a test must skip; a failure instead when
/// `SLICEBED_REQUIRE_KUBECTL` is set (CI installs kubectl, so there a skip would hide a test).
pub fn skip_without_kubectl() -> bool {
    let missing = !kubectl_available();
    if missing {
        assert!(
            std::env::var_os("SLICEBED_REQUIRE_KUBECTL").is_none(),
            "SLICEBED_REQUIRE_KUBECTL is set but kubectl is not installed"
        );
        eprintln!("NOTICE: skipped: kubectl is not installed (apt-get install kubectl)");
    }
    missing
}

/// Waits until the cluster's member [`MEMBER`] is a ready node of its site.
pub async fn member_ready(admin: &Clients) -> pb::Node {
    wait_for(
        &format!("{MEMBER} ready"),
        Duration::from_secs(30),
        || async {
            let n = admin
                .admin
                .clone()
                .get_node(pb::GetNodeRequest {
                    name: MEMBER.into(),
                })
                .await
                .ok()?
                .into_inner();
            (n.state == pb::NodeState::Ready as i32).then_some(n)
        },
    )
    .await
}
