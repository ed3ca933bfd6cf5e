//! exec through kube's websocket client into a Pod on the fake: a real command in a real Docker
//! container of the Pod's image, with stdout, stderr, stdin, exit codes and tar-over-exec copies.
//! Skipped with a notice where no Docker engine answers, unless SLICEBED_REQUIRE_DOCKER is set.

mod common;

use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, DeleteParams, PostParams};
use slicebed_fake_kube::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn running_pod(env: &common::Env) -> Api<Pod> {
    common::namespace(&env.client, "s1").await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "s1");
    let mut p = common::pod("p", Some("fake-node-1"));
    p.spec.as_mut().unwrap().containers[0].command = Some(vec!["sleep".into(), "3600".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    common::wait_for(10, "the pod to run", || async {
        let p = pods.get("p").await.ok()?;
        (p.status?.phase? == "Running").then_some(())
    })
    .await;
    pods
}

async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut v = vec![];
    r.expect("stream requested")
        .read_to_end(&mut v)
        .await
        .unwrap();
    v
}

#[tokio::test]
async fn exec_runs_in_a_container_of_the_pods_image() {
    if !common::docker_ready() {
        return;
    }
    let mut config = Config::with_nodes(1);
    config.docker_exec = true;
    let env = common::start_with(config).await;
    let pods = running_pod(&env).await;

    // stdout, stderr and a non-zero exit code, reported in the final Status as kubectl shows it.
    let mut p = pods
        .exec(
            "p",
            ["sh", "-c", "echo out; echo err >&2; exit 3"],
            &AttachParams::default(),
        )
        .await
        .unwrap();
    let (out, err) = (read_all(p.stdout()).await, read_all(p.stderr()).await);
    let status = p.take_status().unwrap().await.expect("a final status");
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "{status:?}"
    );
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // Copy in over stdin; closing stdin ends the command (v5 close signal).
    let mut p = pods
        .exec(
            "p",
            ["sh", "-c", "cat > /tmp/copied"],
            &AttachParams::default().stdin(true),
        )
        .await
        .unwrap();
    let mut stdin = p.stdin().unwrap();
    stdin.write_all(b"hello from the host\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let status = p.take_status().unwrap().await.expect("a final status");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    // Copy out as kubectl cp does: tar over exec, binary-safe. The file written by the previous
    // exec is there: every exec into a Pod runs in the same container.
    let mut p = pods
        .exec(
            "p",
            ["tar", "cf", "-", "-C", "/tmp", "copied"],
            &AttachParams::default().stderr(false),
        )
        .await
        .unwrap();
    let bytes = read_all(p.stdout()).await;
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut entry = archive
        .entries()
        .unwrap()
        .next()
        .expect("one entry")
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "hello from the host\n");

    // The container goes with its Pod.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    common::wait_for(15, "the pod's container to be removed", || async {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=slicebed.fake-kube.pod=s1/p"])
            .output()
            .ok()?;
        (out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn exec_is_refused_when_not_enabled_or_the_container_is_not_running() {
    let env = common::start(1).await;
    let pods = running_pod(&env).await;
    let e = pods
        .exec("p", ["true"], &AttachParams::default())
        .await
        .err()
        .expect("exec refused");
    assert!(format!("{e:?}").contains("exec is not enabled"), "{e:?}");
    drop(env);

    if !common::docker_ready() {
        return;
    }
    let mut config = Config::with_nodes(1);
    config.docker_exec = true;
    let env = common::start_with(config).await;
    common::namespace(&env.client, "s1").await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "s1");
    pods.create(
        &PostParams::default(),
        &common::pod("waiting", Some("no-such-node")),
    )
    .await
    .unwrap();
    let e = pods
        .exec("waiting", ["true"], &AttachParams::default())
        .await
        .err()
        .expect("exec refused");
    assert!(format!("{e:?}").contains("container not found"), "{e:?}");
}
