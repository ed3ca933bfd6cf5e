//! slicectl's access commands as a person runs them (the real binary, real sockets) against the
//! scripted service in `fake/`. The real service and nodes are tested in `tests/`; this checks
//! the client's side of the contract: fan-out, prefixes, exit codes, timeouts, terminals,
//! streaming copies and the one-line errors.

mod fake;

use std::{
    collections::HashMap,
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fake::{service, SITES};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_fans_out_with_prefixed_lines_and_a_summary() {
    let svc = service();
    let out = svc.run(&[
        "exec",
        "demo",
        "--",
        "sh",
        "-c",
        "echo out-$HOSTNAME; echo err-$HOSTNAME >&2; printf tail-$HOSTNAME",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    for (i, site) in SITES.iter().enumerate() {
        let prefix = format!("[{i} node-{site}/{site}]");
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert!(lines[0].ends_with(&format!(" out-demo-{i}")), "{stdout}");
        // The unfinished last line is flushed at the end, with its prefix.
        assert!(lines[1].ends_with(&format!(" tail-demo-{i}")), "{stdout}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.ends_with(&format!(" err-demo-{i}"))),
            "{stderr}"
        );
    }
    assert!(!stdout.contains('\x1b'), "no colour into a pipe");
    assert!(stderr.contains("SLIVER  NODE"), "{stderr}");
    assert!(stderr.contains("demo/2  node-mit    mit    0"), "{stderr}");
}

#[test]
fn exec_exit_codes_timeouts_and_json() {
    let svc = service();
    let started = Instant::now();
    let out = svc.run(&[
        "exec",
        "demo",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "case $HOSTNAME in demo-1) exit 3;; demo-2) exec sleep 30;; esac",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains("demo/0  node-eth    eth    0\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("demo/1  node-kaist  kaist  3\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("demo/2  node-mit    mit    timed out\n"),
        "{stderr}"
    );

    let out = svc.run(&[
        "exec",
        "demo",
        "--sliver",
        "1",
        "--site",
        "kaist,mit",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        "echo hi; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 1, "{stdout}");
    assert_eq!(objs[0]["index"], 1);
    assert_eq!(objs[0]["exit_code"], 4);
    assert_eq!(objs[0]["stdout"], "hi\n");
    assert_eq!(objs[0]["status"], "exited");

    let out = svc.run(&["exec", "demo", "--site", "nowhere", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: no sliver of slice \"demo\" matches the given --sliver/--site filters\n"
    );
    let out = svc.run(&["exec", "nope", "--", "true"]);
    assert_eq!(
        text(&out.stderr),
        "error: cannot read slice \"nope\": not found: slice \"nope\" (request id fake-run)\n"
    );
}

#[test]
fn shell_from_a_pipe_forwards_stdin_and_returns_the_exit_code() {
    let svc = service();
    let mut child = svc
        .cmd(&["shell", "demo/1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hi from $HOSTNAME tty=$FAKE_TTY\nexit 7\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "hi from demo-1 tty=0\n");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}

#[test]
fn shell_in_a_terminal_uses_raw_mode_and_restores_it() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to make a pseudo-terminal");
        return;
    }
    let svc = service();
    let cmd = format!(
        "{} --server {} --token t shell demo/0 -- sh -c 'stty -a 2>&1 | head -0; echo tty=$FAKE_TTY term=$TERM; read l; echo got=$l; exit 5'; echo rc=$?; stty -a",
        env!("CARGO_BIN_EXE_slicectl"),
        svc.addr
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("SLICECTL_CONFIG", "/nonexistent/slicectl.toml")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stdin.write_all(b"hello\n").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    drop(stdin);
    child.wait().unwrap();
    assert!(out.contains("tty=1 term=xterm"), "{out}");
    assert!(out.contains("got=hello"), "{out}");
    assert!(out.contains("rc=5"), "{out}");
    // In raw mode the local terminal would not have echoed `hello`, and afterwards it is back.
    let after = &out[out.find("rc=5").unwrap()..];
    assert!(
        after.contains(" icanon") && after.contains(" echo "),
        "{after}"
    );
}

#[test]
fn logs_of_one_or_all_slivers() {
    let svc = service();
    let out = svc.run(&["logs", "demo/2", "--tail", "2"]);
    assert_eq!(text(&out.stdout), "log 2 line 8\nlog 2 line 9\n");
    let out = svc.run(&["logs", "demo", "--tail", "1"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[0 node-eth/eth]     log 0 line 9\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[2 node-mit/mit]     log 2 line 9\n"),
        "{stdout}"
    );
    // -f follows until interrupted, then exits cleanly.
    let child = svc
        .cmd(&["logs", "demo/0", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("log 0 line 15\n"));
}

fn write_pseudo_random(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..mib << 17 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all(&x.to_le_bytes()).unwrap();
    }
}

#[test]
fn cp_uploads_to_every_sliver_and_downloads_from_one() {
    let svc = service();
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big.bin");
    write_pseudo_random(&big, 20);
    let out = svc.run(&["cp", big.to_str().unwrap(), "demo:/up"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("copied 20.0 MiB to 3 slivers in "),
        "{stderr}"
    );
    let original = std::fs::read(&big).unwrap();
    for i in 0..3 {
        assert!(std::fs::read(svc.fake.fs(i).join("up/big.bin")).unwrap() == original);
    }

    // A directory into one sliver, then back under a new name and into an existing directory.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/b/c.txt"), "c").unwrap();
    let out = svc.run(&["cp", tree.to_str().unwrap(), "demo/1:/data"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(svc.fake.fs(1).join("data/tree/a/b/c.txt").exists());
    assert!(!svc.fake.fs(0).join("data").exists());
    let back = local.path().join("back");
    let out = svc.run(&["cp", "demo/1:/data/tree", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(back.join("a/b/c.txt")).unwrap(),
        "c"
    );
    let out = svc.run(&["cp", "demo/2:/up/big.bin", back.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.starts_with("copied 20.0 MiB in "), "{stderr}");
    assert!(std::fs::read(back.join("big.bin")).unwrap() == original);

    for (args, msg) in [
        (
            vec!["cp", "demo:/up/big.bin", "x"],
            "error: download from one sliver: name it as demo/INDEX:/up/big.bin\n",
        ),
        (
            vec!["cp", "a", "b"],
            "error: one side must be in a slice: SLICE:PATH or SLICE/INDEX:PATH\n",
        ),
        (
            vec!["cp", "demo/0:/nope", "x"],
            "error: cannot download demo/0:/nope: failed precondition: /nope does not exist (request id fake-run)\n",
        ),
    ] {
        let out = svc.run(&args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stderr), msg);
    }
    let out = svc.run(&["cp", "/no/such/file", "demo:/tmp"]);
    assert!(text(&out.stderr).starts_with("error: cannot read /no/such/file: "));
}

#[test]
fn endpoints_as_table_and_json() {
    let svc = service();
    let out = svc.run(&["endpoints", "demo", "http"]);
    assert_eq!(
        text(&out.stdout).lines().take(2).collect::<Vec<_>>(),
        [
            "INDEX  NODE        SITE   NAME  ENDPOINT         STATE",
            "0      node-eth    eth    http  127.0.0.1:30100  running"
        ]
    );
    let out = svc.run(&["endpoints", "demo", "-o", "json"]);
    let v: Vec<HashMap<String, serde_json::Value>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2]["endpoint"], "127.0.0.1:30102");
}
