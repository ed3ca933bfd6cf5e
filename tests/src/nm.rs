//! A real `node-manager` child process on the local Docker engine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use slicebed_proto::v1 as pb;

use crate::{bin, Clients, Service};

/// Port blocks handed to node managers of this test process, so parallel tests on one Docker
/// engine never publish the same host port. Starts above the local testbed's 30000 range.
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// A unique suffix for names shared on the Docker engine.
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{:x}{:x}", std::process::id() % 4096, n % 65536)
}

/// An enrolled node manager; killed (SIGKILL) on drop, and its containers removed.
pub struct NodeManager {
    pub name: String,
    pub state_dir: PathBuf,
    pub ports: (u32, u32),
    /// `DOCKER_HOST` of the engine the node runs on; `None` means the shared engine.
    docker_host: Option<String>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl NodeManager {
    /// Enrolls a node at `site` through the real `node-manager enroll`, then runs it.
    pub async fn start(svc: &Service, site: &str, name: &str) -> Self {
        Self::start_via(svc, site, name, None).await
    }

    /// Like `start`, but the node dials `server` (e.g. a proxy) instead of the service itself.
    pub async fn start_via(svc: &Service, site: &str, name: &str, server: Option<&str>) -> Self {
        Self::start_with(svc, site, name, server, None).await
    }

    /// Like `start`, but on the Docker engine at `docker_host` (e.g. a
    /// [`PrivateEngine`](crate::engine::PrivateEngine)'s `host()`) instead of the shared one.
    pub async fn start_on(svc: &Service, site: &str, name: &str, docker_host: &str) -> Self {
        Self::start_with(svc, site, name, None, Some(docker_host)).await
    }

    /// Enrolls and runs a node that dials `server` (default: the service) and runs its
    /// containers on `docker_host` (default: `DOCKER_HOST` or the local socket).
    async fn start_with(
        svc: &Service,
        site: &str,
        name: &str,
        server: Option<&str>,
        docker_host: Option<&str>,
    ) -> Self {
        let tok = enrollment_token(&Clients::admin(svc).await, site).await;
        let tmp = tempfile::tempdir().unwrap();
        let state_dir = tmp.path().join("state");
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        // Below the ephemeral range (32768+), where an outgoing connection could hold the port.
        let first = 20000 + (std::process::id() % 25) * 400 + (block % 20) * 20;
        let ports = (first, first + 19);
        let mut enroll = enroll_cmd(svc, &tok, name, &state_dir, ports);
        if let Some(h) = docker_host {
            enroll.env("DOCKER_HOST", h);
        }
        let out = enroll.output().expect("run node-manager enroll");
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(server) = server {
            // From now on the node dials `server` (as if its operator routed it through there).
            let path = state_dir.join("node.json");
            let text = std::fs::read_to_string(&path).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["server"] = serde_json::Value::String(server.to_string());
            std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        }
        let mut nm = NodeManager {
            name: name.into(),
            state_dir,
            ports,
            docker_host: docker_host.map(str::to_string),
            child: None,
            _tmp: tmp,
        };
        nm.run();
        nm
    }

    /// Starts (or restarts) `node-manager run`.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.parent().unwrap().join("node-manager.log"))
            .unwrap();
        let mut cmd = Command::new(bin("node-manager"));
        cmd.arg("run")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(h) = &self.docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        let child = cmd.spawn().expect("spawn node-manager");
        self.child = Some(child);
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.parent().unwrap().join("node-manager.log"))
            .unwrap_or_default()
    }

    /// Process id of the running agent.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no cleanup: containers stay as they are.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `node-manager enroll ...` for a token.
/// A one-time enrollment token for `site`, made by `admin`.
pub async fn enrollment_token(admin: &Clients, site: &str) -> String {
    admin
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: site.into(),
            ttl: None,
        })
        .await
        .expect("enrollment token")
        .into_inner()
        .token
}

pub fn enroll_cmd(
    svc: &Service,
    token: &str,
    name: &str,
    state_dir: &std::path::Path,
    ports: (u32, u32),
) -> Command {
    let mut c = Command::new(bin("node-manager"));
    c.arg("enroll")
        .args(["--server", &svc.url(), "--token", token, "--name", name])
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--cpu", "2", "--memory", "2Gi", "--disk", "20Gi"])
        .args(["--ports", &format!("{}-{}", ports.0, ports.1)]);
    if let Some(ca) = svc.ca_cert() {
        c.arg("--ca-cert").arg(ca);
    }
    c
}

impl Drop for NodeManager {
    fn drop(&mut self) {
        self.kill9();
        let mut cleanup = Command::new(bin("node-manager"));
        cleanup
            .arg("cleanup")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(h) = &self.docker_host {
            cleanup.env("DOCKER_HOST", h);
        }
        let _ = cleanup.status();
    }
}
