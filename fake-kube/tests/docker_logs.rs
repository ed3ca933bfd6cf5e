//! With `docker_exec`, a running Pod is backed by a Docker container started with it: its
//! command runs from the start, its hostname is the Pod's name, and the Pod's log is what that
//! command wrote (stdout and stderr), whole, tailed, or followed as new lines come.
//! Skipped with a notice where no Docker engine answers, unless SLICEBED_REQUIRE_DOCKER is set.

mod common;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams, PostParams};
use slicebed_fake_kube::Config;
use tokio::io::AsyncReadExt;

const SCRIPT: &str = "echo first line; echo to stderr >&2; \
    while true; do if [ -f /tmp/m ]; then echo marked; rm -f /tmp/m; fi; sleep 0.1; done";

async fn exec_out(pods: &Api<Pod>, cmd: &[&str]) -> String {
    let mut p = pods
        .exec("p", cmd.to_vec(), &AttachParams::default())
        .await
        .unwrap();
    let mut v = String::new();
    p.stdout().unwrap().read_to_string(&mut v).await.unwrap();
    v
}

#[tokio::test]
async fn a_pods_log_is_what_its_command_wrote() {
    if !common::docker_ready() {
        return;
    }
    let mut config = Config::with_nodes(1);
    config.docker_exec = true;
    let env = common::start_with(config).await;
    common::namespace(&env.client, "s1").await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "s1");
    let mut p = common::pod("p", Some("fake-node-1"));
    p.spec.as_mut().unwrap().containers[0].command =
        Some(vec!["sh".into(), "-c".into(), SCRIPT.into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();

    // The command runs once the Pod does, with no exec needed to start it.
    let whole = common::wait_for(20, "the command's first lines in the log", || async {
        let l = pods.logs("p", &LogParams::default()).await.ok()?;
        (l.contains("first line") && l.contains("to stderr")).then_some(l)
    })
    .await;
    assert!(!whole.contains("fake-kube:"), "no simulated lines: {whole}");
    assert_eq!(exec_out(&pods, &["hostname"]).await.trim(), "p");

    let mut follow = pods
        .log_stream(
            "p",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .lines();
    exec_out(&pods, &["touch", "/tmp/m"]).await;
    let mut seen = Vec::new();
    while let Some(l) = follow.next().await {
        let l = l.unwrap();
        let done = l == "marked";
        seen.push(l);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l == "first line"),
        "a follow starts with the whole log: {seen:?}"
    );

    let tail = pods
        .logs(
            "p",
            &LogParams {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 1, "{tail}");
    assert!(
        lines[0].ends_with(" marked") && lines[0].starts_with("20"),
        "a stamped last line: {tail}"
    );
}
