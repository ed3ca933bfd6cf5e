//! An interactive shell on a Kubernetes sliver, as on a Docker one (access.rs): `slicectl shell`
//! in a real pseudo-terminal reaches a shell in the Pod (kube's websocket exec asking for a TTY,
//! through the fake API server's Docker-backed exec), typed lines run there, and slicectl ends
//! with the remote exit code. The fake allocates no terminal for a TTY exec (fake-kube's exec
//! docs), so that the remote side is a terminal is checked on Docker only (access.rs); on
//! Kubernetes it would take a real cluster.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::make_site;
use common::testbed::{wait_running, web_slice};
use slicebed_tests::kube::{member_ready, skip_without_kubectl, FakeKubeProcess, KubeAgent};
use slicebed_tests::nm::unique;
use slicebed_tests::{bin, Clients, Service};

#[tokio::test]
async fn a_shell_on_a_kubernetes_sliver_runs_in_a_terminal_and_returns_the_exit_code() {
    if skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKubeProcess::start(tmp.path(), 1, true).await;
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "kube").await;
    let _agent = KubeAgent::cluster(
        &svc,
        &admin,
        "kube",
        "lab",
        (29660, 29679),
        tmp.path(),
        &fake.kubeconfig,
    )
    .await;
    member_ready(&admin).await;
    let name = unique("tty");
    admin
        .slices
        .clone()
        .create_slice(web_slice(&name, 1))
        .await
        .unwrap();
    wait_running(&admin, &name).await;

    let mut cmd = format!(
        "{} --server {} --token {} shell {name}/0",
        bin("slicectl").display(),
        svc.url_str(),
        svc.admin_token
    );
    if let Some(ca) = svc.ca_cert() {
        cmd = cmd.replace(
            " --token ",
            &format!(" --ca-cert {} --token ", ca.display()),
        );
    }
    // `script` gives slicectl a real pseudo-terminal, as a person's terminal would.
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stdin
        .write_all(b"echo marker-$((40+2)) $(tty) $HOSTNAME\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stdin.write_all(b"exit 7\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let host = format!("{name}-0");
    let line = text
        .lines()
        .find(|l| l.contains("marker-42"))
        .unwrap_or_else(|| {
            panic!(
                "the typed line ran in the Pod: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        line.ends_with(&host),
        "in the sliver's Pod, named {host} as on Docker: {line}"
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the remote exit code becomes slicectl's: {text}"
    );
}
