//! Issue 10 (security) findings, each tried as an attacker or a careless operator would, on a
//! real slice-service process over gRPC: tenant history, event log bloat and terminal escapes,
//! tokens (children, revocation, PIs, ids, the bootstrap token, stdin), secrets at rest and
//! absurd durations. Nodes are driven by the test (no containers).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_tests::{bin, wait_for, Clients, Service, TestNode};
use tonic::Code;

mod common;
use common::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn create(c: &Clients, name: &str) {
    c.slices
        .clone()
        .create_slice(slice_req(name, 1, 64 * MI))
        .await
        .expect("create slice");
}

#[tokio::test]
async fn the_next_owner_of_a_slice_name_reads_none_of_its_history() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let bob = Clients::new(&svc, Some(&make_user(&a, "bob", "eth").await)).await;
    let _node = TestNode::join(&svc, "mit", "n1", 4000, 8 * GI).await;
    wait_ready(&a, 1).await;

    create(&alice, "demo").await;
    alice
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "demo".into(),
        })
        .await
        .unwrap();
    create(&bob, "demo").await;

    let seen = events(&bob, "slice/demo").await;
    assert!(!seen.is_empty());
    for e in &seen {
        assert_ne!(e.actor, "user/alice", "bob reads alice's history: {e:?}");
    }
    // Alice keeps her own ended slice's history, and sees nothing of bob's.
    let hers = events(&alice, "slice/demo").await;
    assert!(hers.iter().any(|e| e.actor == "user/alice"));
    assert!(hers.iter().all(|e| e.actor != "user/bob"), "{hers:?}");
}

#[tokio::test]
async fn huge_node_messages_neither_bloat_the_log_nor_reach_terminals_raw() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let node = TestNode::join(&svc, "mit", "n1", 4000, 8 * GI).await;
    wait_ready(&a, 1).await;
    let s = alice
        .slices
        .clone()
        .create_slice(slice_req("demo", 1, 64 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let sliver = s.slivers[0].id.clone();
    for i in 0..20 {
        let msg = format!("\u{1b}]0;owned\u{7}\u{1b}[2J{i}{}", "x".repeat(1_500_000));
        node.report(&sliver, pb::SliverState::Running, &msg).await;
    }
    wait_for("the 20 reports", Duration::from_secs(20), || {
        let alice = alice.clone();
        async move { (events(&alice, "slice/demo").await.len() >= 21).then_some(()) }
    })
    .await;

    // The whole log in one answer: it used to fail with "decoded message length too large".
    let all = a
        .slices
        .clone()
        .list_events(pb::ListEventsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("listing events")
        .into_inner();
    let reports: Vec<_> = all
        .events
        .iter()
        .filter(|e| e.actor == "node/n1" && e.object.starts_with("sliver/"))
        .collect();
    assert_eq!(reports.len(), 20);
    for e in reports {
        assert!(e.detail.len() < 2048, "{} bytes kept", e.detail.len());
        assert!(!e.detail.contains('\u{1b}'), "raw escape: {:.60}", e.detail);
        assert!(
            e.detail.starts_with("\\x1b]0;owned\\x07"),
            "{:.60}",
            e.detail
        );
        assert!(e.detail.contains("truncated"), "{:.60}", e.detail);
    }
}

#[tokio::test]
async fn tokens_die_with_their_parent_and_a_watch_stops_at_revocation() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let first = a
        .admin
        .clone()
        .create_user(pb::CreateUserRequest {
            name: "alice".into(),
            role: pb::Role::User as i32,
            site: "mit".into(),
            token_ttl: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let alice = Clients::new(&svc, Some(&first.token)).await;
    let child = alice
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            ttl: Some(prost_types::Duration {
                seconds: 400 * 86_400,
                nanos: 0,
            }),
            description: "laptop".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let parent_end = first.token_info.unwrap().expires_at.unwrap().seconds;
    let child_end = child.info.unwrap().expires_at.unwrap().seconds;
    assert!(
        child_end <= parent_end,
        "a child outlives its parent by {}s",
        child_end - parent_end
    );

    let laptop = Clients::new(&svc, Some(&child.token)).await;
    let mut watch = laptop
        .slices
        .clone()
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("watch")
        .into_inner();

    // The user's first token is revoked (stolen, say): what it created goes with it.
    let id = alice
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .token_id;
    a.admin
        .clone()
        .revoke_token(pb::RevokeTokenRequest { id })
        .await
        .unwrap();

    let e = laptop
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let end = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch kept going after its token was revoked");
    let e = end.expect_err("an error ends the watch");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}

#[tokio::test]
async fn a_watch_opened_before_its_token_is_revoked_stops() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let mut watch = alice
        .slices
        .clone()
        .watch_events(pb::WatchEventsRequest {
            object: "user/alice".into(),
            after_id: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let tokens = a
        .admin
        .clone()
        .list_tokens(pb::ListTokensRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    a.admin
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            id: tokens[0].id.clone(),
        })
        .await
        .unwrap();
    // Something she could have seen happens after the revocation.
    a.admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch kept going after its token was revoked");
    match next {
        Err(e) => assert_eq!(e.code(), Code::Unauthenticated, "{e:?}"),
        Ok(e) => panic!("delivered after revocation: {e:?}"),
    }
}

#[tokio::test]
async fn a_pi_cannot_mint_a_token_to_act_as_a_user_of_its_site() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_user(&a, "alice", "mit").await;
    let pi = Clients::new(
        &svc,
        Some(&make_user_as(&a, "pat", pb::Role::Pi, "mit").await),
    )
    .await;
    let e = pi
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("only admins"), "{}", e.message());
}

#[tokio::test]
async fn token_ids_tell_nothing_of_their_secrets() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    for _ in 0..5 {
        let t = a
            .admin
            .clone()
            .create_token(pb::CreateTokenRequest::default())
            .await
            .unwrap()
            .into_inner();
        let id = t.info.unwrap().id;
        let (_, digits) = id.split_once('-').unwrap();
        assert!(!t.token.contains(digits), "id {id} is part of the secret");
    }
}

#[tokio::test]
async fn the_bootstrap_admin_token_expires_and_slicectl_rotates_it_from_stdin() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let tokens = a
        .admin
        .clone()
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let boot = tokens.iter().find(|t| !t.revoked).unwrap();
    let created = boot.created_at.as_ref().unwrap().seconds;
    let expires = boot
        .expires_at
        .as_ref()
        .expect("the bootstrap token expires")
        .seconds;
    assert_eq!(expires - created, 30 * 86_400);

    // The secret goes through stdin, never the command line.
    let cfg = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("slicectl"))
        .args([
            "token",
            "rotate",
            "-o",
            "json",
            "--server",
            svc.url_str(),
            "--token",
            "-",
        ])
        .env("XDG_CONFIG_HOME", cfg.path())
        .env("SLICECTL_CA_CERT", svc.ca_cert().unwrap())
        .env_remove("SLICECTL_TOKEN")
        .env_remove("SLICECTL_CONTEXT")
        .env_remove("SLICECTL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", svc.admin_token).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = v["token"].as_str().expect("the new secret").to_string();

    let e = a
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let me = Clients::new(&svc, Some(&new))
        .await
        .slices
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user, "admin");
}

/// Runs slicectl with a private config directory; `stdin` is written to its standard input.
fn slicectl(svc: &Service, cfg: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(bin("slicectl"))
        .args(args)
        .env("XDG_CONFIG_HOME", cfg)
        .env("SLICECTL_CA_CERT", svc.ca_cert().unwrap())
        .env_remove("SLICECTL_SERVER")
        .env_remove("SLICECTL_TOKEN")
        .env_remove("SLICECTL_CONTEXT")
        .env_remove("SLICECTL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "slicectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn login_reads_the_token_from_stdin_and_rotate_replaces_it_in_the_context() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let first = make_user(&a, "alice", "mit").await;
    let cfg = tempfile::tempdir().unwrap();
    let out = slicectl(
        &svc,
        cfg.path(),
        &["login", "--server", svc.url_str(), "--token", "-"],
        &format!("{first}\n"),
    );
    assert!(out.contains("alice"), "{out}");

    let out = slicectl(&svc, cfg.path(), &["token", "rotate"], "");
    assert!(out.contains("saved in context"), "{out}");
    assert!(
        !out.contains("sbu_"),
        "a saved secret is not printed: {out}"
    );
    let config = std::fs::read_to_string(cfg.path().join("slicebed/config.toml")).unwrap();
    assert!(!config.contains(&first), "the old token is still saved");

    // The saved token works; the old one is revoked.
    let who = slicectl(&svc, cfg.path(), &["-o", "json", "whoami"], "");
    let v: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(v["user"], "alice");
    let e = Clients::new(&svc, Some(&first))
        .await
        .slices
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_drain_deadline_of_i64_max_seconds_is_refused_not_wrapped_into_an_eviction() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let mut n1 = TestNode::join(&svc, "mit", "n1", 4000, 8 * GI).await;
    wait_ready(&a, 1).await;
    create(&alice, "demo").await;

    let e = a
        .admin
        .clone()
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            deadline: Some(prost_types::Duration {
                seconds: i64::MAX,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("deadline"), "{}", e.message());
    assert_eq!(node(&a, "n1").await.state, pb::NodeState::Ready as i32);
    // Nothing is removed: the node gets no remove command.
    while let Some(m) = n1.recv(Duration::from_secs(2)).await {
        assert!(
            !matches!(m.msg, Some(pb::service_message::Msg::Remove(_))),
            "evicted: {m:?}"
        );
    }
}

#[tokio::test]
async fn the_data_directory_and_database_are_private() {
    let svc = Service::start().await;
    assert_eq!(mode(&svc.dir), 0o700, "data directory");
    if let Some(rest) = svc.database_url.strip_prefix("sqlite://") {
        let file = std::path::Path::new(rest.split('?').next().unwrap());
        assert_eq!(mode(file), 0o600, "database {}", file.display());
    }
    assert_eq!(mode(&svc.dir.join("admin.token")), 0o600, "admin token");
}

#[tokio::test]
async fn a_tls_key_others_can_read_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (c, k) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(bin("slice-service"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--tls-cert")
        .arg(&c)
        .arg("--tls-key")
        .arg(&k)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for("slice-service to refuse", Duration::from_secs(30), || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(!status.success(), "it served with a world-readable key");
    let text = format!("{err}{out}");
    assert!(
        text.contains(&format!("chmod 600 {}", k.display())),
        "the error names the file and the fix: {text}"
    );
}

#[tokio::test]
async fn slice_lists_come_in_pages_small_enough_to_decode() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let _n1 = TestNode::join(&svc, "mit", "n1", 8000, 16 * GI).await;
    wait_ready(&a, 1).await;
    // 18 slices of 250 KB of environment each: 4.5 MB, past the 4 MiB clients decode.
    for i in 0..18 {
        let mut r = slice_req(&format!("big{i}"), 1, 64 * MI);
        r.env = (0..8)
            .map(|k| (format!("V{k}"), "x".repeat(31_000)))
            .collect();
        a.slices.clone().create_slice(r).await.expect("create");
    }
    let first = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .expect("the first page decodes")
        .into_inner();
    assert!(!first.next_page_token.is_empty() && first.slices.len() < 18);

    let cfg = tempfile::tempdir().unwrap();
    let out = slicectl(
        &svc,
        cfg.path(),
        &[
            "-o",
            "json",
            "--server",
            svc.url_str(),
            "--token",
            "-",
            "slice",
            "list",
        ],
        &format!("{}\n", svc.admin_token),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 18, "every page is read");
}

#[tokio::test]
async fn node_manager_enroll_reads_its_token_from_standard_input() {
    use slicebed_tests::nm::{enroll_cmd, unique};
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("stdin");
    // `--token -`: the secret is on standard input, not on the command line.
    let mut child = enroll_cmd(&svc, "-", &name, &dir.path().join("a"), (45100, 45110))
        .env_remove("SLICEBED_ENROLL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{tok}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    assert!(dir.path().join("a/node.crt").exists());
    assert!(nodes(&a).await.iter().any(|n| n.name == name));

    // What `slicectl node token` tells the operator to run keeps the token off the command.
    let cfg = tempfile::tempdir().unwrap();
    let printed = slicectl(
        &svc,
        cfg.path(),
        &[
            "--server",
            svc.url_str(),
            "--token",
            "-",
            "node",
            "token",
            "--site",
            "mit",
        ],
        &format!("{}\n", svc.admin_token),
    );
    let secret = printed
        .split_whitespace()
        .find(|w| w.starts_with("sbe_"))
        .expect("the token is printed");
    assert!(printed.lines().any(|l| l.trim() == secret), "{printed}");
    let command = printed
        .lines()
        .find(|l| l.contains("node-manager enroll"))
        .expect("the command is printed");
    assert!(
        command.contains("--token -") && !command.contains(secret),
        "{command}"
    );

    // Empty standard input: a clear refusal, nothing sent.
    let out = enroll_cmd(
        &svc,
        "-",
        &unique("empty"),
        &dir.path().join("b"),
        (45100, 45110),
    )
    .env_remove("SLICEBED_ENROLL_TOKEN")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("standard input"), "{err}");
}

#[tokio::test]
async fn an_upload_open_when_its_token_is_revoked_ends_unauthenticated() {
    use common::testbed::*;
    use slicebed_proto::v1::access_service_client::AccessServiceClient;
    use slicebed_tests::client::{channel, Bearer};
    let tb = testbed(&["mit"]).await;
    let alice = make_user(&tb.admin, "alice", "mit").await;
    let alice_c = Clients::new(&tb.svc, Some(&alice)).await;
    alice_c
        .slices
        .clone()
        .create_slice(web_slice("up", 1))
        .await
        .expect("create slice");
    wait_running(&tb.admin, "up").await;
    let mut access =
        AccessServiceClient::with_interceptor(channel(&tb.svc).await, Bearer::new(&alice).unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::CopyToRequest {
        msg: Some(pb::copy_to_request::Msg::Start(pb::CopyToStart {
            sliver: Some(pb::SliverRef {
                slice: "up".into(),
                index: 0,
            }),
            path: "/tmp".into(),
        })),
    })
    .await
    .unwrap();
    // The start of a tar archive, and then nothing: the upload stays open.
    tx.send(pb::CopyToRequest {
        msg: Some(pb::copy_to_request::Msg::Data(vec![0u8; 512])),
    })
    .await
    .unwrap();
    let call = tokio::spawn(async move {
        access
            .copy_to(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Let the session reach the node before the revocation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !call.is_finished(),
        "the upload ended before the revocation"
    );
    let tokens = tb
        .admin
        .admin
        .clone()
        .list_tokens(pb::ListTokensRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    for t in tokens {
        tb.admin
            .admin
            .clone()
            .revoke_token(pb::RevokeTokenRequest { id: t.id })
            .await
            .unwrap();
    }
    let end = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the upload kept going after its token was revoked")
        .unwrap();
    let e = end.expect_err("the upload must not succeed");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    drop(tx);
}

#[tokio::test]
async fn node_lists_come_in_pages_and_slicectl_reads_them_all_once() {
    use slicebed_tests::node::{enroll, enroll_request};
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    // 60 nodes with 64 labels of ~320 bytes each: about 1.2 MiB, more than one page.
    const N: usize = 60;
    let labels: std::collections::HashMap<String, String> = (0..64)
        .map(|k| (format!("k{k:02}{}", "k".repeat(58)), "v".repeat(255)))
        .collect();
    for i in 0..N {
        let tok = a
            .admin
            .clone()
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                site: "mit".into(),
                ttl: None,
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let mut req = enroll_request(&format!("big{i:02}"), 1000, GI, (30000, 30999));
        req.labels = labels.clone();
        enroll(&svc, &tok, req).await.expect("enroll");
    }
    let mut names = Vec::new();
    let (mut page_token, mut pages) = (String::new(), 0);
    loop {
        let page = a
            .admin
            .clone()
            .list_nodes(pb::ListNodesRequest {
                page_token,
                ..Default::default()
            })
            .await
            .expect("every page decodes")
            .into_inner();
        pages += 1;
        names.extend(page.nodes.into_iter().map(|n| n.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(pages >= 2, "{pages} page(s)");
    let mut want: Vec<String> = (0..N).map(|i| format!("big{i:02}")).collect();
    names.sort();
    want.sort();
    assert_eq!(names, want, "every node exactly once");

    let cfg = tempfile::tempdir().unwrap();
    let out = slicectl(
        &svc,
        cfg.path(),
        &[
            "-o",
            "json",
            "--server",
            svc.url_str(),
            "--token",
            "-",
            "node",
            "list",
        ],
        &format!("{}\n", svc.admin_token),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut got: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "slicectl reads every page, each node once");

    // A page token the service did not give is refused, not read as the first page.
    let e = a
        .admin
        .clone()
        .list_users(pb::ListUsersRequest {
            page_token: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}
