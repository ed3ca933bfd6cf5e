//! Access sessions against the real Docker engine, driven through in-process session streams
//! (the gRPC path through the service is covered by the workspace's black-box tests): exec
//! output, stdin and exit codes, terminals, killing on disconnect and idle, logs, and copy both
//! ways. Skips (with a message) where no engine is reachable.

use std::io::Read;
use std::time::Duration;

use bollard::Docker;
use node_manager::access::idle::Idle;
use node_manager::access::stream::{Peer, Session};
use node_manager::access::Access;
use node_manager::domain::{Resources, RestartPolicy, SliverSpec};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;
use slicebed_proto::v1::open_session::Kind;
use slicebed_proto::v1::session_frame::Frame;
use slicebed_proto::v1::{ExecStart, LogsRequest, SessionEnd, SessionFrame, TerminalSize};

/// A node with one running sliver `s0` whose main process runs `command`.
struct Node {
    rt: DockerRuntime,
    container: String,
}

impl Node {
    async fn start(name: &str, command: &str) -> Option<Node> {
        let rt = DockerRuntime::connect(None, format!("{name}-{}", std::process::id()))
            .await
            .ok()?;
        if rt.ping().await.is_err() {
            eprintln!("skipping: no Docker engine");
            return None;
        }
        if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
            eprintln!("skipping: no base image ({e})");
            return None;
        }
        cleanup(&rt).await;
        let spec = SliverSpec {
            sliver_id: "s0".into(),
            slice: "acc".into(),
            index: 0,
            image: DEFAULT_TAG.into(),
            command: vec!["sh".into(), "-c".into(), command.into()],
            env: [("GREETING".to_string(), "hi".to_string())].into(),
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 128 << 20,
                disk_bytes: 1 << 30,
            },
            ports: vec![],
            restart: RestartPolicy::Never,
            generation: 1,
            lease_expires_at: None,
            image_digest: String::new(),
            pull: None,
        };
        rt.ensure_network("acc").await.unwrap();
        let container = rt.create_and_start(&spec).await.unwrap();
        Some(Node { rt, container })
    }

    fn docker(&self) -> &Docker {
        self.rt.docker()
    }

    fn access(&self) -> Access<DockerRuntime> {
        Access::from_runtime(&self.rt)
    }

    /// Starts a session; the node side runs in a task.
    fn open(&self, kind: Kind, idle: Duration) -> (Peer, tokio::task::JoinHandle<()>) {
        let (session, peer) = Session::local(Idle::new(idle));
        let access = self.access();
        let task = tokio::spawn(async move { access.serve("s0", Some(kind), session).await });
        (peer, task)
    }

    /// Command lines of the processes in the sliver's container.
    async fn processes(&self) -> Vec<String> {
        let top = self
            .docker()
            .top_processes(
                &self.container,
                None::<bollard::query_parameters::TopOptions>,
            )
            .await
            .unwrap();
        let cmd = top.titles.unwrap().iter().position(|t| t == "CMD").unwrap();
        top.processes
            .unwrap_or_default()
            .into_iter()
            .map(|p| p[cmd].clone())
            .collect()
    }

    async fn done(self) {
        cleanup(&self.rt).await;
    }
}

async fn cleanup(rt: &DockerRuntime) {
    for c in rt.list().await.unwrap() {
        rt.remove(&c.container_id).await.unwrap();
    }
    for n in rt.list_networks().await.unwrap() {
        rt.remove_network(&n).await.unwrap();
    }
}

fn exec(command: &[&str]) -> ExecStart {
    ExecStart {
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn send(peer: &Peer, f: Frame) {
    peer.to_node
        .send(Ok(SessionFrame { frame: Some(f) }))
        .await
        .unwrap();
}

/// Everything the node sent until its `SessionEnd` (bounded wait).
async fn collect(peer: &mut Peer) -> (Vec<u8>, Vec<u8>, SessionEnd) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), peer.from_node.recv())
            .await
            .expect("no SessionEnd within 30 s")
            .expect("the node closed the stream without SessionEnd");
        match f.frame {
            Some(Frame::Stdout(b)) => {
                assert!(b.len() <= 64 * 1024, "frame of {} bytes", b.len());
                out.extend(b)
            }
            Some(Frame::Stderr(b)) => err.extend(b),
            Some(Frame::End(e)) => return (out, err, e),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn exec_output_stdin_and_exit_codes() {
    let Some(node) = Node::start("nmacc-exec", "sleep 300").await else {
        return;
    };
    let (mut peer, _t) = node.open(Kind::Exec(exec(&["echo", "hi"])), LONG);
    let (out, _, end) = collect(&mut peer).await;
    assert_eq!((out.as_slice(), end.exit_code), (&b"hi\n"[..], Some(0)));

    let mut e = exec(&[
        "sh",
        "-c",
        "echo out; echo err >&2; echo $GREETING $EXTRA; exit 3",
    ]);
    e.env = [("EXTRA".to_string(), "x".to_string())].into();
    let (mut peer, _t) = node.open(Kind::Exec(e), LONG);
    let (out, err, end) = collect(&mut peer).await;
    assert_eq!(String::from_utf8_lossy(&out), "out\nhi x\n");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    assert_eq!((end.exit_code, end.error.as_str()), (Some(3), ""));

    let mut e = exec(&["cat"]);
    e.stdin = true;
    let (mut peer, _t) = node.open(Kind::Exec(e), LONG);
    send(&peer, Frame::Stdin(b"hello ".to_vec())).await;
    send(&peer, Frame::Stdin(b"world".to_vec())).await;
    send(&peer, Frame::StdinEof(true)).await;
    let (out, _, end) = collect(&mut peer).await;
    assert_eq!(
        (out.as_slice(), end.exit_code),
        (&b"hello world"[..], Some(0))
    );

    // A terminal of the asked size, resized on the way.
    // The engine (API < 1.42) cannot start an exec with a size: it is set right after start.
    let mut e = exec(&["sh", "-c", "sleep 1; stty size; read x; stty size"]);
    (e.tty, e.stdin) = (true, true);
    e.size = Some(TerminalSize {
        cols: 100,
        rows: 30,
    });
    let (mut peer, _t) = node.open(Kind::Exec(e), LONG);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let f = tokio::time::timeout(Duration::from_secs(10), peer.from_node.recv()).await;
        match f.expect("no terminal size within 10 s").unwrap().frame {
            Some(Frame::Stdout(b)) => seen.extend(b),
            other => panic!(
                "unexpected {other:?} after {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    send(
        &peer,
        Frame::Resize(TerminalSize {
            cols: 120,
            rows: 40,
        }),
    )
    .await;
    send(&peer, Frame::Stdin(b"\n".to_vec())).await;
    let (out, err, end) = collect(&mut peer).await;
    assert!(String::from_utf8_lossy(&out).contains("40 120"), "{out:?}");
    assert!(err.is_empty(), "a terminal merges stderr into stdout");
    assert_eq!(end.exit_code, Some(0));

    let (mut peer, _t) = node.open(Kind::Exec(exec(&["no-such-program"])), LONG);
    let (_, _, end) = collect(&mut peer).await;
    assert_ne!(end.exit_code, Some(0));
    node.done().await;
}

async fn wait_for_processes(node: &Node, pred: impl Fn(&[String]) -> bool, what: &str) {
    for _ in 0..100 {
        if pred(&node.processes().await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: processes are {:?}", node.processes().await);
}

#[tokio::test]
async fn a_vanished_client_or_idle_session_leaves_no_process() {
    let Some(node) = Node::start("nmacc-kill", "sleep 300").await else {
        return;
    };
    let marker = |ps: &[String]| ps.iter().filter(|c| c.contains("777")).count();
    // A shell with a background child and a foreground one: the whole tree must go.
    let e = exec(&["sh", "-c", "sleep 777 & sleep 7777; echo never"]);
    let (peer, task) = node.open(Kind::Exec(e), LONG);
    wait_for_processes(&node, |ps| marker(ps) == 3, "exec never started").await;
    drop(peer); // the service dropped the stream: the client went away
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("session did not end")
        .unwrap();
    wait_for_processes(&node, |ps| marker(ps) == 0, "exec processes leaked").await;
    assert_eq!(
        node.processes().await.len(),
        1,
        "only the sliver's own process is left"
    );

    let e = exec(&["sleep", "8888"]);
    let (mut peer, _t) = node.open(Kind::Exec(e), Duration::from_secs(1));
    let (_, _, end) = collect(&mut peer).await;
    assert_eq!((end.error.as_str(), end.exit_code), ("idle timeout", None));
    wait_for_processes(
        &node,
        |ps| !ps.iter().any(|c| c.contains("8888")),
        "idle exec leaked",
    )
    .await;
    node.done().await;
}

#[tokio::test]
async fn refuses_slivers_of_other_nodes_and_stopped_containers() {
    let Some(node) = Node::start("nmacc-scope", "exit 0").await else {
        return;
    };
    let other = Access::new(DockerRuntime::new(node.docker().clone(), "some-other-node"));
    let (s, mut peer) = Session::local(Idle::new(LONG));
    other
        .serve("s0", Some(Kind::Exec(exec(&["true"]))), s)
        .await;
    let (_, _, end) = collect(&mut peer).await;
    assert_eq!(
        end.error,
        "sliver s0 has no container on node some-other-node"
    );

    for _ in 0..100 {
        let c = node.rt.inspect(&node.container).await.unwrap().unwrap();
        if c.phase != node_manager::domain::ContainerPhase::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut peer, _t) = node.open(Kind::Exec(exec(&["true"])), LONG);
    let (_, _, end) = collect(&mut peer).await;
    assert!(end.error.contains("is not running"), "{}", end.error);
    assert_eq!(end.exit_code, None);
    node.done().await;
}

#[tokio::test]
async fn logs_with_tail_and_follow() {
    let Some(node) = Node::start(
        "nmacc-logs",
        "echo one; echo two >&2; echo three; sleep 1; echo four; exit 0",
    )
    .await
    else {
        return;
    };
    let logs = |follow, tail| {
        Kind::Logs(LogsRequest {
            sliver: None,
            follow,
            tail,
        })
    };
    let (mut peer, _t) = node.open(logs(true, 0), LONG);
    let (out, err, end) = collect(&mut peer).await;
    // Following ends when the container stops.
    assert_eq!(String::from_utf8_lossy(&out), "one\nthree\nfour\n");
    assert_eq!(String::from_utf8_lossy(&err), "two\n");
    assert_eq!(end, SessionEnd::default());

    let (mut peer, _t) = node.open(logs(false, 1), LONG);
    let (out, err, _) = collect(&mut peer).await;
    assert_eq!((out.as_slice(), err.len()), (&b"four\n"[..], 0));
    node.done().await;
}

/// A tar holding `dir/` with a small file and a large pseudo-random one.
fn archive(large: usize) -> (Vec<u8>, Vec<u8>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..large)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, body).unwrap();
    };
    add("dir/small.txt", b"small\n");
    add("dir/large.bin", &data);
    (b.into_inner().unwrap(), data)
}

#[tokio::test]
async fn copy_to_then_from_round_trips_and_names_bad_paths() {
    let Some(node) = Node::start("nmacc-copy", "sleep 300").await else {
        return;
    };
    let (tar, data) = archive(20 << 20);
    let (mut peer, _t) = node.open(Kind::CopyTo("/tmp".into()), LONG);
    for chunk in tar.chunks(1 << 20) {
        send(&peer, Frame::Stdin(chunk.to_vec())).await;
    }
    send(&peer, Frame::StdinEof(true)).await;
    let (_, _, end) = collect(&mut peer).await;
    assert_eq!((end.error.as_str(), end.bytes), ("", tar.len() as u64));

    let (mut peer, _t) = node.open(Kind::CopyFrom("/tmp/dir".into()), LONG);
    let (out, _, end) = collect(&mut peer).await;
    assert_eq!((end.error.as_str(), end.bytes), ("", out.len() as u64));
    let mut got = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(out.as_slice());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        got.insert(path, body);
    }
    assert_eq!(
        got.get("dir/small.txt").map(Vec::as_slice),
        Some(&b"small\n"[..])
    );
    assert!(
        got.get("dir/large.bin") == Some(&data),
        "large file differs"
    );

    let cases = [
        (
            Kind::CopyFrom("/nope".into()),
            "no such file or directory in the sliver: /nope",
        ),
        (
            Kind::CopyTo("/nope".into()),
            "no such directory in the sliver: /nope",
        ),
        (
            Kind::CopyTo("/tmp/dir/small.txt".into()),
            "not a directory in the sliver: /tmp/dir/small.txt",
        ),
    ];
    for (kind, want) in cases {
        let (mut peer, _t) = node.open(kind, LONG);
        let (out, _, end) = collect(&mut peer).await;
        assert_eq!((end.error.as_str(), out.len()), (want, 0));
    }
    node.done().await;
}
