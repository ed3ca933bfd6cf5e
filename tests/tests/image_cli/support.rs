//! What the `image` CLI tests share: a service with users, slicectl run as one of them, images
//! built on the real Docker engine without a registry, and the store's own view over gRPC.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use slicebed_proto::v1::{self as pb, image_service_client::ImageServiceClient};
use slicebed_tests::client::{channel, Bearer};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{bin, wait_for, Clients, Service};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::common::{make_site, make_user};

pub const BASE: &str = "slicebed/base:latest";

/// A service with sites `mit` and `eth` and users alice (mit), bob (mit) and carol (eth).
pub struct Store {
    pub svc: Service,
    pub alice: String,
    pub bob: String,
    pub carol: String,
    pub cfg: tempfile::TempDir,
}

impl Store {
    pub async fn start() -> Store {
        let svc = Service::start().await;
        let a = Clients::admin(&svc).await;
        make_site(&a, "mit").await;
        make_site(&a, "eth").await;
        let alice = make_user(&a, "alice", "mit").await;
        let bob = make_user(&a, "bob", "mit").await;
        let carol = make_user(&a, "carol", "eth").await;
        ensure_base(&svc).await;
        Store {
            svc,
            alice,
            bob,
            carol,
            cfg: tempfile::tempdir().unwrap(),
        }
    }

    /// slicectl with `token` against this service (isolated config, no terminal).
    pub fn command(&self, token: &str, args: &[&str]) -> Command {
        self.command_via(self.svc.url_str(), token, args)
    }

    /// slicectl with `token` dialing `server` (e.g. a proxy in front of this service).
    pub fn command_via(&self, server: &str, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("slicectl"));
        cmd.args(["--server", server, "--token", token])
            .args(args)
            .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
            .env("XDG_CONFIG_HOME", self.cfg.path())
            .env_remove("SLICECTL_SERVER")
            .env_remove("SLICECTL_TOKEN")
            .env_remove("SLICECTL_CONTEXT");
        cmd
    }

    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        self.command(token, args).output().expect("run slicectl")
    }

    /// Runs `-o json ARGS` and parses the answer; panics with slicectl's stderr on failure.
    pub fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        parse(&ok(&self.run(token, &all)))
    }

    /// The bytes of `digest` the store holds of `token`'s partial upload, while it is partial.
    pub async fn partial(&self, token: &str, digest: &str) -> Option<u64> {
        let st = self
            .images(token)
            .await
            .blob_status(pb::BlobStatusRequest {
                digests: vec![digest.to_string()],
            })
            .await
            .ok()?
            .into_inner();
        let b = st.blobs.first()?;
        (!b.present).then_some(b.received)
    }

    /// The image store as `token` sees it, over gRPC.
    pub async fn images(
        &self,
        token: &str,
    ) -> ImageServiceClient<InterceptedService<Channel, Bearer>> {
        ImageServiceClient::with_interceptor(channel(&self.svc).await, Bearer::new(token).unwrap())
    }

    /// GetImage as `token`.
    pub async fn get(&self, token: &str, reference: &str) -> Result<pb::Image, tonic::Status> {
        self.images(token)
            .await
            .get_image(pb::GetImageRequest {
                reference: reference.into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

pub fn parse(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "slicectl failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The single `error: …` line of a failed run.
pub fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Status {"),
        "{err}"
    );
    err
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The base image is built by node managers from the host's static busybox (no registry); one
/// is started to build it when this engine has none yet.
async fn ensure_base(svc: &Service) {
    if docker(&["image", "inspect", BASE]).status.success() {
        return;
    }
    let a = Clients::admin(svc).await;
    make_site(&a, "base").await;
    let _nm = NodeManager::start(svc, "base", &unique("img-base")).await;
    wait_for(
        "the node manager to build slicebed/base:latest",
        Duration::from_secs(60),
        || async {
            docker(&["image", "inspect", BASE])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
}

/// A local image built with `docker build` FROM `from`, one layer per RUN line; removed on drop.
pub struct Built {
    pub tag: String,
}

impl Built {
    pub fn new(tag: &str, from: &str, runs: &[&str]) -> Built {
        let dir = tempfile::tempdir().unwrap();
        let mut file = format!("FROM {from}\n");
        for r in runs {
            file.push_str(&format!("RUN {r}\n"));
        }
        std::fs::write(dir.path().join("Dockerfile"), file).unwrap();
        docker_ok(&["build", "-q", "-t", tag, &dir.path().display().to_string()]);
        Built { tag: tag.into() }
    }

    /// A local image built with `docker build` from the whole Dockerfile `text`.
    pub fn dockerfile(tag: &str, text: &str) -> Built {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
        docker_ok(&["build", "-q", "-t", tag, &dir.path().display().to_string()]);
        Built { tag: tag.into() }
    }

    /// `rootfs.diff_ids` as the engine reports them: the layer digests the store must get.
    pub fn layers(&self) -> Vec<String> {
        let out = docker_ok(&[
            "image",
            "inspect",
            "-f",
            "{{json .RootFS.Layers}}",
            &self.tag,
        ]);
        serde_json::from_str(&out).unwrap()
    }

    /// `docker save` into `dir`.
    pub fn save(&self, dir: &Path) -> PathBuf {
        let p = dir.join("image.tar");
        docker_ok(&["save", "-o", &p.display().to_string(), &self.tag]);
        p
    }
}

impl Drop for Built {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

/// A repository name no other test (or earlier run) uses.
pub fn fresh(prefix: &str) -> String {
    unique(prefix).replace('-', "")
}
