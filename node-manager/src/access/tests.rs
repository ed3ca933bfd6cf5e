//! The session relays (exec, logs, copy) against the scripted fake backend: what a researcher
//! sees on the wire — output, exit codes, refusals in words — and that an exec never outlives
//! its session. The same relays run against the real engine in `tests/access.rs`.

use std::time::Duration;

use bytes::Bytes;
use slicebed_proto::v1::open_session::Kind;
use slicebed_proto::v1::session_frame::Frame;
use slicebed_proto::v1::{ExecStart, LogsRequest, SessionEnd, SessionFrame, TerminalSize};
use tokio::task::JoinHandle;

use super::idle::Idle;
use super::stream::{Peer, Session};
use super::Access;
use crate::domain::{ContainerPhase, Resources, RestartPolicy, SliverSpec};
use crate::runtime::fake::{Behaviour, Entry, ExecBehaviour, FakeRuntime};
use crate::runtime::{Capabilities, Output, Runtime};

const IMAGE: &str = "img:1";
const LONG: Duration = Duration::from_secs(3600);

/// Node `n1` with one running sliver `s0`; returns the runtime and the container id.
async fn node() -> (FakeRuntime, String) {
    let rt = FakeRuntime::new("n1")
        .with_image(IMAGE, Behaviour::Run)
        .with_exec(
            "report",
            ExecBehaviour::Script {
                output: vec![
                    Output::Stdout(Bytes::from_static(b"hi\n")),
                    Output::Stderr(Bytes::from_static(b"careful\n")),
                ],
                exit_code: 3,
            },
        )
        .with_exec("cat", ExecBehaviour::Echo)
        .with_exec("sleep", ExecBehaviour::Hang);
    let spec = SliverSpec {
        sliver_id: "s0".into(),
        slice: "web".into(),
        index: 0,
        image: IMAGE.into(),
        command: vec![],
        env: Default::default(),
        resources: Resources::default(),
        ports: vec![],
        restart: RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    };
    rt.ensure_network("web").await.unwrap();
    let id = rt.create_and_start(&spec).await.unwrap();
    (rt, id)
}

/// Starts a session about `sliver` on `rt`; the node side runs in a task.
fn open(rt: &FakeRuntime, sliver: &str, kind: Kind, idle: Duration) -> (Peer, JoinHandle<()>) {
    let (session, peer) = Session::local(Idle::new(idle));
    let access = Access::new(rt.clone());
    let sliver = sliver.to_string();
    let task = tokio::spawn(async move { access.serve(&sliver, Some(kind), session).await });
    (peer, task)
}

fn exec(cmd: &[&str]) -> Kind {
    Kind::Exec(ExecStart {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        stdin: true,
        ..Default::default()
    })
}

async fn send(peer: &Peer, f: Frame) {
    peer.to_node
        .send(Ok(SessionFrame { frame: Some(f) }))
        .await
        .expect("node side open");
}

/// Stdout, stderr and the end frame; then closes the service's side so the node finishes.
async fn collect(mut peer: Peer) -> (Vec<u8>, Vec<u8>, SessionEnd) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match peer.from_node.recv().await.and_then(|f| f.frame) {
            Some(Frame::Stdout(b)) => out.extend(b),
            Some(Frame::Stderr(b)) => err.extend(b),
            Some(Frame::End(e)) => return (out, err, e),
            other => panic!("unexpected frame {other:?} (stream ended without SessionEnd?)"),
        }
    }
}

/// The error a session about `sliver` ends with.
async fn refusal(rt: &FakeRuntime, sliver: &str, kind: Kind) -> String {
    let (peer, task) = open(rt, sliver, kind, LONG);
    let (_, _, end) = collect(peer).await;
    task.await.unwrap();
    end.error
}

#[tokio::test]
async fn exec_relays_stdout_stderr_and_the_exit_code() {
    let (rt, _) = node().await;
    let (peer, task) = open(&rt, "s0", exec(&["report"]), LONG);
    let (out, err, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"hi\n"[..], &b"careful\n"[..])
    );
    assert_eq!((end.exit_code, end.error.as_str()), (Some(3), ""));
    assert!(
        rt.killed_execs().is_empty(),
        "a process that exited is not killed"
    );
}

#[tokio::test]
async fn exec_feeds_stdin_until_end_of_input() {
    let (rt, _) = node().await;
    let (peer, task) = open(&rt, "s0", exec(&["cat"]), LONG);
    send(&peer, Frame::Stdin(b"hello ".to_vec())).await;
    send(&peer, Frame::Stdin(b"world".to_vec())).await;
    send(&peer, Frame::StdinEof(true)).await;
    let (out, _, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(
        (out.as_slice(), end.exit_code),
        (&b"hello world"[..], Some(0))
    );
}

#[tokio::test]
async fn exec_resizes_a_terminal() {
    let (rt, _) = node().await;
    let start = Kind::Exec(ExecStart {
        command: vec!["cat".into()],
        stdin: true,
        tty: true,
        ..Default::default()
    });
    let (peer, task) = open(&rt, "s0", start, LONG);
    send(
        &peer,
        Frame::Resize(TerminalSize {
            rows: 40,
            cols: 120,
        }),
    )
    .await;
    send(&peer, Frame::StdinEof(true)).await;
    let (_, _, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(end.exit_code, Some(0));
    assert!(
        rt.calls().iter().any(|c| c.ends_with(" 40x120")),
        "{:?}",
        rt.calls()
    );
}

#[tokio::test]
async fn a_client_that_goes_away_kills_the_exec() {
    let (rt, _) = node().await;
    let (peer, task) = open(&rt, "s0", exec(&["sleep"]), LONG);
    send(&peer, Frame::Stdin(b"x".to_vec())).await;
    drop(peer);
    task.await.unwrap();
    assert_eq!(rt.killed_execs(), vec![vec!["sleep".to_string()]]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_exec_is_killed_and_the_client_told() {
    let (rt, _) = node().await;
    let (peer, task) = open(&rt, "s0", exec(&["sleep"]), Duration::from_secs(5));
    let (_, _, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(end.error, "idle timeout");
    assert_eq!(rt.killed_execs().len(), 1);
}

#[tokio::test]
async fn exec_is_refused_with_words_a_researcher_can_act_on() {
    let (rt, cid) = node().await;
    assert_eq!(
        refusal(&rt, "nope", exec(&["report"])).await,
        "sliver nope has no container on node n1"
    );
    assert_eq!(refusal(&rt, "", exec(&["report"])).await, "no sliver named");
    assert_eq!(refusal(&rt, "s0", exec(&[])).await, "no command given");
    let missing = refusal(&rt, "s0", exec(&["nosuch"])).await;
    assert!(
        missing.starts_with("cannot run the command: ") && missing.contains("\"nosuch\""),
        "{missing}"
    );
    rt.update(&cid, |c| c.phase = ContainerPhase::EXITED);
    assert_eq!(
        refusal(&rt, "s0", exec(&["report"])).await,
        "sliver s0 is not running (its container is exited)"
    );
    assert!(rt.exec_containers().is_empty(), "nothing ran");
}

#[tokio::test]
async fn a_sliver_of_another_node_on_the_same_engine_is_refused() {
    let (rt, _) = node().await;
    let other = rt.on_node("n2");
    assert_eq!(
        refusal(&other, "s0", exec(&["report"])).await,
        "sliver s0 has no container on node n2"
    );
    assert_eq!(
        refusal(&other, "s0", Kind::CopyFrom("/etc/hostname".into())).await,
        "sliver s0 has no container on node n2"
    );
    assert!(rt.exec_containers().is_empty());
}

#[tokio::test]
async fn what_the_backend_cannot_do_is_refused_up_front() {
    let (rt, _) = node().await;
    let rt = rt.with_capabilities(Capabilities {
        exec: false,
        logs: false,
        copy: false,
        ..Capabilities::ALL
    });
    assert_eq!(
        refusal(&rt, "s0", exec(&["report"])).await,
        "this node's backend cannot run commands in slivers"
    );
    assert_eq!(
        refusal(&rt, "s0", Kind::Logs(LogsRequest::default())).await,
        "this node's backend cannot read logs in slivers"
    );
    assert_eq!(
        refusal(&rt, "s0", Kind::CopyTo("/tmp".into())).await,
        "this node's backend cannot copy files in slivers"
    );
    assert!(rt.exec_containers().is_empty());
}

fn line(s: &'static str) -> Output {
    Output::Stdout(Bytes::from_static(s.as_bytes()))
}

#[tokio::test]
async fn logs_send_the_tail_or_everything() {
    let (rt, _) = node().await;
    rt.set_log(
        "s0",
        vec![
            line("one\n"),
            Output::Stderr(Bytes::from_static(b"two\n")),
            line("three\n"),
        ],
    );
    let tail = |n| {
        Kind::Logs(LogsRequest {
            tail: n,
            ..Default::default()
        })
    };
    let (peer, task) = open(&rt, "s0", tail(1), LONG);
    let (out, err, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(
        (out.as_slice(), err.len(), end.error.as_str()),
        (&b"three\n"[..], 0, "")
    );
    let (peer, task) = open(&rt, "s0", tail(0), LONG);
    let (out, err, _) = collect(peer).await;
    task.await.unwrap();
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"one\nthree\n"[..], &b"two\n"[..])
    );
    assert_eq!(
        refusal(&rt, "gone", tail(0)).await,
        "sliver gone has no container on node n1"
    );
}

#[tokio::test]
async fn a_followed_log_ends_when_the_client_leaves() {
    let (rt, _) = node().await;
    rt.set_log("s0", vec![line("one\n")]);
    let follow = Kind::Logs(LogsRequest {
        follow: true,
        ..Default::default()
    });
    let (mut peer, task) = open(&rt, "s0", follow, LONG);
    let first = peer.from_node.recv().await.and_then(|f| f.frame);
    assert_eq!(first, Some(Frame::Stdout(b"one\n".to_vec())));
    drop(peer);
    task.await.unwrap();
}

#[tokio::test]
async fn copy_into_a_directory_streams_the_tar_and_counts_bytes() {
    let (rt, cid) = node().await;
    let (peer, task) = open(&rt, "s0", Kind::CopyTo("/tmp/".into()), LONG);
    send(&peer, Frame::Stdin(vec![1; 700])).await;
    send(&peer, Frame::Stdin(vec![2; 300])).await;
    send(&peer, Frame::StdinEof(true)).await;
    let (_, _, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!((end.bytes, end.error.as_str()), (1000, ""));
    let uploads = rt.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (uploads[0].0.as_str(), uploads[0].1.as_str()),
        (cid.as_str(), "/tmp")
    );
    assert_eq!(uploads[0].2.len(), 1000);
}

#[tokio::test]
async fn copy_to_a_non_directory_or_a_missing_one_is_refused() {
    let (rt, _) = node().await;
    assert_eq!(
        refusal(&rt, "s0", Kind::CopyTo("/etc/hostname".into())).await,
        "not a directory in the sliver: /etc/hostname"
    );
    assert_eq!(
        refusal(&rt, "s0", Kind::CopyTo("/nope".into())).await,
        "no such directory in the sliver: /nope"
    );
    assert!(rt.uploads().is_empty(), "nothing extracted");
}

#[tokio::test]
async fn copy_out_of_a_sliver_sends_a_tar_of_the_path() {
    let (rt, cid) = node().await;
    rt.put(
        &cid,
        "/tmp/data.txt",
        Entry::File(Bytes::from_static(b"payload")),
    );
    let (peer, task) = open(&rt, "s0", Kind::CopyFrom("/tmp/data.txt".into()), LONG);
    let (out, _, end) = collect(peer).await;
    task.await.unwrap();
    assert_eq!((end.bytes, end.error.as_str()), (out.len() as u64, ""));
    let mut archive = tar::Archive::new(out.as_slice());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("data.txt"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "payload");
    assert_eq!(
        refusal(&rt, "s0", Kind::CopyFrom("/nope".into())).await,
        "no such file or directory in the sliver: /nope"
    );
}

#[test]
fn a_log_tail_of_zero_means_all() {
    let spec = super::logs::spec(&LogsRequest {
        tail: 0,
        follow: true,
        ..Default::default()
    });
    assert_eq!((spec.tail, spec.follow), (None, true));
    let spec = super::logs::spec(&LogsRequest {
        tail: 25,
        ..Default::default()
    });
    assert_eq!(spec.tail, Some(25));
}
