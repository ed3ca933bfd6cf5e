//! Researcher access end to end: slicectl -> slice-service -> the node's own outbound session
//! stream -> Docker, with real processes and containers.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::testbed::*;
use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::access_service_client::AccessServiceClient;
use slicebed_tests::client::{channel, Bearer};
use slicebed_tests::{bin, wait_for};
use tonic::Code;

fn ctl(tb: &Testbed, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin("slicectl"))
        .args(["--server", tb.svc.url_str(), "--token", token])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .output()
        .expect("run slicectl")
}

async fn access(
    tb: &Testbed,
    token: &str,
) -> AccessServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
> {
    AccessServiceClient::with_interceptor(
        channel(&tb.svc).await,
        Bearer::new(token).expect("token"),
    )
}

fn logger_slice(name: &str, per_site: u32) -> pb::CreateSliceRequest {
    let mut r = web_slice(name, per_site);
    r.command = vec![
        "sh".into(),
        "-c".into(),
        "echo hello from $HOSTNAME > /tmp/index.html; httpd -p 8080 -h /tmp; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done".into(),
    ];
    r
}

#[tokio::test]
async fn fan_out_exec_prefixes_lines_and_summarises_exit_codes() {
    let tb = testbed(&["eth", "kaist", "mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("fan", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "fan").await;
    let out = ctl(
        &tb,
        &tb.svc.admin_token,
        &[
            "exec",
            "fan",
            "--",
            "sh",
            "-c",
            "echo out-$HOSTNAME; echo err-$HOSTNAME >&2",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for i in 0..3 {
        let line = stdout
            .lines()
            .find(|l| l.ends_with(&format!("out-fan-{i}")))
            .unwrap_or_else(|| panic!("sliver {i} output missing: {stdout}"));
        assert!(
            line.starts_with('['),
            "prefixed with the sliver's name: {line}"
        );
        assert!(stderr.contains(&format!("err-fan-{i}")), "{stderr}");
    }
    // One sliver fails: the exit code says so and the summary names it.
    let out = ctl(
        &tb,
        &tb.svc.admin_token,
        &[
            "exec",
            "fan",
            "--",
            "sh",
            "-c",
            "[ $HOSTNAME != fan-1 ] || exit 3",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains('3'), "summary shows exit code 3: {stderr}");
    // Each exec is in the event log with who and what.
    let ev = events(&tb.admin, "slice/fan").await;
    assert!(
        ev.iter().any(|e| e.action == "exec"
            && e.actor == "user/admin"
            && e.detail.contains("echo out-")),
        "{ev:?}"
    );
}

#[tokio::test]
async fn a_shell_through_a_pseudo_terminal_runs_commands_and_returns_the_exit_code() {
    let tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("sh", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "sh").await;
    let cmd = format!(
        "{} --server {} --ca-cert {} --token {} shell sh/0",
        bin("slicectl").display(),
        tb.svc.url_str(),
        tb.svc.ca_cert().unwrap().display(),
        tb.svc.admin_token
    );
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
    stdin.write_all(b"echo marker-$((40+2)) $(tty)\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stdin.write_all(b"exit 7\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("marker-42 /dev/pts/"),
        "the command ran in a terminal in the sliver: {text}"
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the remote exit code becomes slicectl's: {text}"
    );
}

#[tokio::test]
async fn logs_follow_sees_lines_as_they_are_written() {
    let tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("logs", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "logs").await;
    let mut a = access(&tb, &tb.svc.admin_token).await;
    let mut stream = a
        .logs(pb::LogsRequest {
            sliver: Some(pb::SliverRef {
                slice: "logs".into(),
                index: 0,
            }),
            follow: true,
            tail: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // Lines keep arriving while the call is open: a line numbered 15 is written ~3 s in.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first_big = loop {
        let m = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("line 15 within 20 s")
            .expect("log stream")
            .expect("log stream open");
        if let Some(pb::logs_response::Msg::Stdout(b)) = m.msg {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
        let n = seen
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.trim().parse::<u32>().ok())
            .max();
        if let Some(n) = n.filter(|n| *n >= 15) {
            break n;
        }
    };
    assert!(first_big >= 15);
    // Tail gives only the last lines.
    let out = ctl(&tb, &tb.svc.admin_token, &["logs", "logs/0", "--tail", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("line ")).count(),
        2,
        "{text}"
    );
}

#[tokio::test]
async fn a_100_mib_copy_round_trip_keeps_the_checksum() {
    let tb = testbed(&["mit"]).await;
    let mut req = logger_slice("cp", 1);
    req.resources.as_mut().unwrap().disk_bytes = 2 * GI;
    tb.admin.slices.clone().create_slice(req).await.unwrap();
    wait_running(&tb.admin, "cp").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    {
        let mut f = std::fs::File::create(&src).unwrap();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..100 {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
    }
    let up = ctl(
        &tb,
        &tb.svc.admin_token,
        &["cp", src.to_str().unwrap(), "cp:/tmp"],
    );
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let back = dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let down = ctl(
        &tb,
        &tb.svc.admin_token,
        &["cp", "cp/0:/tmp/big.bin", back.to_str().unwrap()],
    );
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let sum = |p: &std::path::Path| {
        let o = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let got = if back.join("big.bin").exists() {
        back.join("big.bin")
    } else {
        back.clone()
    };
    assert_eq!(std::fs::metadata(&got).unwrap().len(), 100 << 20);
    assert_eq!(sum(&src), sum(&got));
}

#[tokio::test]
async fn the_directory_resolves_endpoints_that_really_reach_the_slivers() {
    let tb = testbed(&["eth", "mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("dir", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "dir").await;
    let mut a = access(&tb, &tb.svc.admin_token).await;
    let eps = a
        .resolve_endpoints(pb::ResolveEndpointsRequest {
            slice: "dir".into(),
            port: "http".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    assert_eq!(eps.len(), 2);
    for e in &eps {
        let body = wait_for("endpoint answers", Duration::from_secs(10), || {
            let (addr, port) = (e.address.clone(), e.port);
            async move {
                use std::io::Read;
                let mut s = std::net::TcpStream::connect((addr.as_str(), port as u16)).ok()?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            }
        })
        .await;
        assert!(
            body.contains(&format!("hello from dir-{}", e.index)),
            "{body}"
        );
    }
    let e = a
        .resolve_endpoints(pb::ResolveEndpointsRequest {
            slice: "dir".into(),
            port: "ssh".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let out = ctl(&tb, &tb.svc.admin_token, &["endpoints", "dir", "http"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("127.0.0.1:{}", eps[0].port)));
}

#[tokio::test]
async fn every_verb_is_refused_to_a_user_who_is_not_a_member() {
    let tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("private", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "private").await;
    let eve = make_user(&tb.admin, "eve", "mit").await;
    let mut a = access(&tb, &eve).await;
    let sliver = Some(pb::SliverRef {
        slice: "private".into(),
        index: 0,
    });
    let start = pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sliver: sliver.clone(),
            command: vec!["id".into()],
            ..Default::default()
        })),
    };
    let denied = |c: Code| c == Code::NotFound || c == Code::PermissionDenied;
    let e = a.exec(tokio_stream::iter(vec![start])).await.unwrap_err();
    assert!(denied(e.code()), "exec: {e:?}");
    let e = a
        .logs(pb::LogsRequest {
            sliver: sliver.clone(),
            follow: false,
            tail: 0,
        })
        .await
        .unwrap_err();
    assert!(denied(e.code()), "logs: {e:?}");
    let e = a
        .copy_from(pb::CopyFromRequest {
            sliver: sliver.clone(),
            path: "/etc".into(),
        })
        .await
        .unwrap_err();
    assert!(denied(e.code()), "copy from: {e:?}");
    let up = pb::CopyToRequest {
        msg: Some(pb::copy_to_request::Msg::Start(pb::CopyToStart {
            sliver: sliver.clone(),
            path: "/tmp".into(),
        })),
    };
    let e = a.copy_to(tokio_stream::iter(vec![up])).await.unwrap_err();
    assert!(denied(e.code()), "copy to: {e:?}");
    let e = a
        .resolve_endpoints(pb::ResolveEndpointsRequest {
            slice: "private".into(),
            port: String::new(),
        })
        .await
        .unwrap_err();
    assert!(denied(e.code()), "endpoints: {e:?}");
    let out = ctl(&tb, &eve, &["shell", "private/0"]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_client_that_disconnects_ends_its_process_in_the_sliver() {
    let tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(logger_slice("leak", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "leak").await;
    let mut a = access(&tb, &tb.svc.admin_token).await;
    let start = pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sliver: Some(pb::SliverRef {
                slice: "leak".into(),
                index: 0,
            }),
            command: vec!["sleep".into(), "4242".into()],
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(start).await.unwrap();
    let call = a
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let node = tb.nodes[0].name.clone();
    let cid = containers(&node).await[0].0.clone();
    let sleeping = |cid: String| async move {
        let o = Command::new("docker").args(["top", &cid]).output().ok()?;
        Some(String::from_utf8_lossy(&o.stdout).contains("sleep 4242"))
    };
    wait_for("exec process started", Duration::from_secs(10), || {
        let f = sleeping(cid.clone());
        async move { f.await.filter(|x| *x).map(|_| ()) }
    })
    .await;
    drop(call);
    drop(tx);
    drop(a);
    wait_for(
        "exec process gone after the client left",
        Duration::from_secs(15),
        || {
            let f = sleeping(cid.clone());
            async move { f.await.filter(|x| !*x).map(|_| ()) }
        },
    )
    .await;
}
