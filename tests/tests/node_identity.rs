//! Node identity (issue 10): nodes speak only mutual TLS with a certificate the service's CA
//! issued to them, each for itself; an admin can revoke an identity; a second control stream
//! is refused; what a node claims about itself is bounded; the service refuses plaintext off
//! loopback and private keys that others may read. Real service processes, the node API
//! over real gRPC/TLS (the test node) and real node managers.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::node::{enroll, enroll_request, hello, key_and_csr, NodeCredential};
use slicebed_tests::{bin, wait_for, Clients, Service, TestNode};
use tonic::Code;

async fn enrollment_token(a: &Clients, site: &str) -> String {
    a.admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: site.into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

fn actions(ev: &[pb::Event]) -> Vec<String> {
    ev.iter().map(|e| e.action.clone()).collect()
}

/// A certificate for `node` signed with the test CA's key but never issued by the service
/// (what someone holding a copy of the CA key, or another service of the same CA, could make).
fn forged(node: &str) -> NodeCredential {
    let (ca_cert, ca_key) = slicebed_tests::service::test_ca();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_key).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(ca_cert).unwrap(), ca_key)
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, node);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "slicebed node");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    NodeCredential {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    }
}

/// Before: the node credential was a bearer secret and the name came from it; anyone holding
/// it spoke for the node. Now: only the client certificate the service issued to a node, over
/// mutual TLS, speaks for that node.
#[tokio::test]
async fn a_node_speaks_only_with_the_certificate_issued_to_it() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut n1 = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    let n2 = TestNode::join(&svc, "mit", "n2", 2000, 2 * GI).await;
    match n1.recv(Duration::from_secs(5)).await.unwrap().msg {
        Some(pb::service_message::Msg::Welcome(w)) => assert_eq!(w.node, "n1"),
        other => panic!("expected Welcome, got {other:?}"),
    }

    // No client certificate: no control channel, with or without a bearer token.
    for token in [None, Some(svc.admin_token.as_str())] {
        let e = slicebed_tests::node::control_without_certificate(&svc, token)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
        assert!(e.message().contains("client certificate"), "{e}");
    }
    // A certificate of the right CA that the service never issued is refused.
    n1.disconnect();
    let e = TestNode::connect_once(&svc, "n1", &forged("n1"), 2000, 2 * GI)
        .await
        .err()
        .expect("a forged certificate is refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(e.message().contains("not issued"), "{e}");
    // n2's certificate names n2, whatever the connection claims: n2's Welcome, never n1's.
    let n2_cred = n2.credential.clone();
    n2.disconnect();
    let mut as_n2 = TestNode::connect(&svc, "n1", &n2_cred, 2000, 2 * GI)
        .await
        .unwrap();
    match as_n2.recv(Duration::from_secs(5)).await.unwrap().msg {
        Some(pb::service_message::Msg::Welcome(w)) => assert_eq!(w.node, "n2"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    // The enrollment CSR chooses nothing but the key: a CSR asking for "admin" names n3.
    let tok = enrollment_token(&a, "mit").await;
    let mut req = enroll_request("n3", 1000, GI, (30000, 30010));
    let (key_pem, csr) = key_and_csr("admin");
    req.csr_pem = csr;
    let resp = Clients::new(&svc, Some(&tok))
        .await
        .node
        .clone()
        .enroll(req)
        .await
        .unwrap()
        .into_inner();
    assert!(resp.credential.is_empty(), "no bearer credential any more");
    let cert = resp.certificate.unwrap();
    assert!(cert.ca_certificate_pem.contains("BEGIN CERTIFICATE"));
    let n3 = NodeCredential {
        key_pem,
        cert_pem: cert.certificate_pem,
    };
    let mut c3 = TestNode::connect(&svc, "admin", &n3, 1000, GI)
        .await
        .unwrap();
    match c3.recv(Duration::from_secs(5)).await.unwrap().msg {
        Some(pb::service_message::Msg::Welcome(w)) => assert_eq!(w.node, "n3"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    // An enrollment without a CSR is refused, naming the field.
    let tok = enrollment_token(&a, "mit").await;
    let e = Clients::new(&svc, Some(&tok))
        .await
        .node
        .clone()
        .enroll(pb::EnrollRequest {
            csr_pem: String::new(),
            ..enroll_request("n4", 1000, GI, (30000, 30010))
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("csr_pem"), "{e}");
}

/// Before: a second control stream silently replaced the first. Now it is refused with words
/// and written as an event, and the first stream keeps working.
#[tokio::test]
async fn a_second_control_stream_is_refused_and_written_as_an_event() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let e = TestNode::connect_once(&svc, "n1", &node.credential, 2000, 2 * GI)
        .await
        .err()
        .expect("the second stream is refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(
        e.message().contains("already has an open control channel"),
        "{e}"
    );
    let ev = events(&a, "node/n1").await;
    assert!(
        actions(&ev).contains(&"second control channel refused".to_string()),
        "{:?}",
        actions(&ev)
    );
    // The first one still carries commands: a slice placed now reaches it.
    let mut node = node;
    a.slices
        .clone()
        .create_slice(slice_req("s1", 1, 64 * MI))
        .await
        .unwrap();
    loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("the first stream still works")
            .msg
        {
            Some(pb::service_message::Msg::Upsert(_)) => break,
            _ => continue,
        }
    }
}

/// Before: a node could claim a million cores, inject labels that survived its reconnects,
/// and move its address silently. Now capacity is capped at what it enrolled with (an event),
/// its labels are the admins' and PIs', and an address change is an event.
#[tokio::test]
async fn what_a_node_claims_is_bounded() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let tok = enrollment_token(&a, "mit").await;
    let mut req = enroll_request("n1", 2000, 2 * GI, (30000, 30999));
    req.labels.insert("zone".into(), "lab".into());
    let cred = enroll(&svc, &tok, req).await.unwrap();
    let mut h = hello(1_000_000_000, 1 << 50);
    h.labels.insert("gpu".into(), "a100".into());
    h.address = "203.0.113.9".into();
    let node = TestNode::connect_with(&svc, "n1", &cred, h).await.unwrap();
    wait_ready(&a, 1).await;
    let n = common::node(&a, "n1").await;
    let cap = n.capacity.unwrap();
    assert_eq!((cap.cpu_millis, cap.memory_bytes), (2000, 2 * GI));
    assert_eq!(
        n.labels.get("zone").map(String::as_str),
        Some("lab"),
        "enrollment seeds the labels"
    );
    assert!(!n.labels.contains_key("gpu"), "{:?}", n.labels);
    assert_eq!(n.address, "203.0.113.9");
    let ev = actions(&events(&a, "node/n1").await);
    for want in ["capacity capped", "address changed"] {
        assert!(ev.contains(&want.to_string()), "missing {want} in {ev:?}");
    }
    // A million cores do not place a million slices.
    let mut big = slice_req("big", 1, 64 * MI);
    big.resources.as_mut().unwrap().cpu_millis = 4000;
    assert!(a.slices.clone().create_slice(big).await.is_err());

    // Labels are set by admins and PIs of the node's site, and survive the node reconnecting.
    let labelled = a
        .admin
        .clone()
        .label_node(pb::LabelNodeRequest {
            name: "n1".into(),
            set: [("gpu".to_string(), "none".to_string())].into(),
            remove: vec!["zone".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        labelled.labels,
        [("gpu".to_string(), "none".to_string())].into()
    );
    let other_pi = make_user_as(&a, "quinn", pb::Role::Pi, "eth").await;
    let e = Clients::new(&svc, Some(&other_pi))
        .await
        .admin
        .clone()
        .label_node(pb::LabelNodeRequest {
            name: "n1".into(),
            set: [("x".to_string(), "y".to_string())].into(),
            remove: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    node.disconnect();
    let mut h = hello(2000, 2 * GI);
    h.labels.insert("gpu".into(), "h100".into());
    let start = std::time::Instant::now();
    let _node = loop {
        match TestNode::connect_with(&svc, "n1", &cred, h.clone()).await {
            Ok(n) => break n,
            Err(e) if e.code() == Code::FailedPrecondition && start.elapsed().as_secs() < 10 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("reconnect: {e}"),
        }
    };
    wait_ready(&a, 1).await;
    let n = common::node(&a, "n1").await;
    assert_eq!(n.labels.get("gpu").map(String::as_str), Some("none"));
}

/// Before: a node credential never expired and could not be revoked. Now a revoked node is
/// cut off at once, cannot come back or renew with its certificate, and enrolls again under
/// its name without losing its slivers.
#[tokio::test]
async fn a_revoked_node_is_cut_off_and_must_enroll_again_keeping_its_slivers() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let sl = a
        .slices
        .clone()
        .create_slice(slice_req("keep", 1, 64 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let sliver = sl.slivers[0].id.clone();
    node.report(&sliver, pb::SliverState::Running, "").await;

    // A PI of another site may not; an admin may.
    make_site(&a, "eth").await;
    let other_pi = make_user_as(&a, "quinn", pb::Role::Pi, "eth").await;
    let e = Clients::new(&svc, Some(&other_pi))
        .await
        .admin
        .clone()
        .revoke_node(pb::RevokeNodeRequest { name: "n1".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    a.admin
        .clone()
        .revoke_node(pb::RevokeNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    // Its control stream ends (the service drops it; no heartbeat needs to pass).
    loop {
        match tokio::time::timeout(Duration::from_secs(10), node.recv(Duration::from_secs(10)))
            .await
        {
            Ok(None) | Err(_) => break,
            Ok(Some(_)) => continue,
        }
    }
    // It cannot come back with its certificate, nor ask for a new one.
    let e = TestNode::connect(&svc, "n1", &node.credential, 2000, 2 * GI)
        .await
        .err()
        .expect("a revoked certificate is refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(e.message().contains("revoked"), "{e}");
    let ev = actions(&events(&a, "node/n1").await);
    assert!(ev.contains(&"identity revoked".to_string()), "{ev:?}");
    // Its slivers were not evicted.
    let s = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "keep".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(s.slivers[0].state, pb::SliverState::Stopping as i32);
    assert_ne!(s.slivers[0].state, pb::SliverState::Deleted as i32);

    // A new enrollment under the same name (new token, new key) gets the same slivers back.
    let tok = enrollment_token(&a, "mit").await;
    let cred = enroll(
        &svc,
        &tok,
        enroll_request("n1", 2000, 2 * GI, (30000, 30999)),
    )
    .await
    .unwrap();
    let mut back = TestNode::connect(&svc, "n1", &cred, 2000, 2 * GI)
        .await
        .unwrap();
    let set = loop {
        match back
            .recv(Duration::from_secs(5))
            .await
            .expect("desired set")
            .msg
        {
            Some(pb::service_message::Msg::Desired(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(
        set.slivers
            .iter()
            .map(|v| v.sliver_id.as_str())
            .collect::<Vec<_>>(),
        [sliver.as_str()]
    );
    // While a node is enrolled and not revoked, its name cannot be taken by another enrollment.
    let tok = enrollment_token(&a, "mit").await;
    let e = enroll(
        &svc,
        &tok,
        enroll_request("n1", 2000, 2 * GI, (30000, 30999)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");
}

/// Certificates are short-lived: one past its end opens nothing, and the service closes a
/// control channel when the certificate it was opened with expires.
#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let svc = Service::start_with(
        "[nodes]\nheartbeat_interval = \"500ms\"\nmissed_heartbeats = 3\ncert_ttl = \"3s\"\n",
    )
    .await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    // The service ends the stream once the certificate expires.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), node.recv(Duration::from_secs(20)))
            .await
        {
            Ok(None) | Err(_) => break,
            Ok(Some(_)) => continue,
        }
    }
    // Refused in the TLS handshake (or, should it get that far, by the service).
    let r = TestNode::connect_once(&svc, "n1", &node.credential, 2000, 2 * GI).await;
    assert!(r.is_err(), "an expired certificate is refused");
}

/// A node renews its certificate over the control channel (same key, new serial); revoked,
/// it cannot.
#[tokio::test]
async fn renewal_over_the_control_channel() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    let csr = {
        let key = rcgen::KeyPair::from_pem(&node.credential.key_pem).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.serialize_request(&key).unwrap().pem().unwrap()
    };
    node.send(Msg::Renew(pb::RenewCertificate {
        csr_pem: csr.clone(),
    }))
    .await;
    let fresh = loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("a certificate")
            .msg
        {
            Some(pb::service_message::Msg::Certificate(c)) => break c,
            _ => continue,
        }
    };
    assert_ne!(fresh.certificate_pem, node.credential.cert_pem);
    let renewed = NodeCredential {
        key_pem: node.credential.key_pem.clone(),
        cert_pem: fresh.certificate_pem,
    };
    let old = node.credential.clone();
    node.disconnect();
    let mut again = TestNode::connect(&svc, "n1", &renewed, 2000, 2 * GI)
        .await
        .unwrap();
    match again.recv(Duration::from_secs(5)).await.unwrap().msg {
        Some(pb::service_message::Msg::Welcome(w)) => assert_eq!(w.node, "n1"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    // Revoked, every certificate of the node dies, old and renewed alike.
    a.admin
        .clone()
        .revoke_node(pb::RevokeNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    for cred in [&old, &renewed] {
        let e = TestNode::connect(&svc, "n1", cred, 2000, 2 * GI)
            .await
            .err()
            .expect("revoked");
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    }
}

/// Runs `slice-service` with `args` and a fresh data dir; returns (exited?, stderr so far).
fn run_service(args: &[&str], data: &std::path::Path) -> (bool, String) {
    // A killed run leaves its address file behind.
    let _ = std::fs::remove_file(data.join("service.addr"));
    let mut child = Command::new(bin("slice-service"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal exits at once; a service that starts writes service.addr.
    let addr = data.join("service.addr");
    let started = std::time::Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (true, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if addr.exists() || started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (false, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Before: plaintext was served off loopback and a TLS key readable by all was accepted.
#[test]
fn plaintext_off_loopback_and_readable_keys_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (exited, err) = run_service(
        &["--listen", "0.0.0.0:0", "--tls", "off"],
        &tmp.path().join("a"),
    );
    assert!(exited, "plaintext off loopback must be refused: {err}");
    assert!(err.contains("--insecure"), "{err}");
    let (exited, err) = run_service(
        &["--listen", "0.0.0.0:0", "--tls", "off", "--insecure"],
        &tmp.path().join("b"),
    );
    assert!(!exited, "--insecure allows it: {err}");
    // TLS is the default, off loopback too, from the service's own CA (key 0600).
    let data = tmp.path().join("c");
    let (exited, err) = run_service(&["--listen", "0.0.0.0:0"], &data);
    assert!(!exited, "TLS by default: {err}");
    let mode = std::fs::metadata(data.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A given key that others may read: refused, naming the file.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (c, k) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (exited, err) = run_service(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
        ],
        &tmp.path().join("d"),
    );
    assert!(exited, "a readable key must be refused: {err}");
    assert!(err.contains("tls.key"), "{err}");
    // So is a CA key others may read.
    let data = tmp.path().join("c");
    std::fs::set_permissions(data.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (exited, err) = run_service(&["--listen", "127.0.0.1:0"], &data);
    assert!(exited, "a readable CA key must be refused: {err}");
    assert!(err.contains("ca.key"), "{err}");
}

/// The real node manager against a service with its own CA: it enrolls with a key that stays
/// in its state dir (0600, no bearer credential), runs over mutual TLS, and is cut off when
/// an admin revokes it with `slicectl node revoke`: its control channel and the exec session
/// it serves end, its container stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_manager_enrolls_with_its_own_key_and_is_cut_off_by_revoke() {
    use std::os::unix::fs::PermissionsExt;
    let svc = Service::start_own_ca("").await;
    assert!(svc.node_ca().exists(), "the service made its CA");
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let name = unique("mtls");
    let nm = NodeManager::start(&svc, "mit", &name).await;
    wait_ready(&a, 1).await;
    let key = nm.state_dir.join("node.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!nm.state_dir.join("credential").exists());
    // A sliver with an exec session in progress.
    let mut req = slice_req("held", 1, 64 * MI);
    req.command = vec!["sleep".into(), "100000".into()];
    a.slices.clone().create_slice(req).await.unwrap();
    common::testbed::wait_running(&a, "held").await;
    let mut access =
        slicebed_proto::v1::access_service_client::AccessServiceClient::with_interceptor(
            slicebed_tests::client::channel(&svc).await,
            slicebed_tests::client::Bearer::new(&svc.admin_token).unwrap(),
        );
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sliver: Some(pb::SliverRef {
                slice: "held".into(),
                index: 0,
            }),
            command: vec!["sh".into(), "-c".into(), "echo started; sleep 4243".into()],
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut exec = access
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = exec.message().await.unwrap().expect("output");
    assert!(
        matches!(&first.msg, Some(pb::exec_response::Msg::Stdout(b)) if b.starts_with(b"started")),
        "{first:?}"
    );
    let out = Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(["node", "revoke", &name])
        .env("SLICECTL_CA_CERT", svc.ca_cert().unwrap())
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the node manager to be refused",
        Duration::from_secs(20),
        || {
            let log = nm.log();
            async move { log.contains("identity was revoked").then_some(()) }
        },
    )
    .await;
    let n = common::node(&a, &name).await;
    assert_ne!(n.state, pb::NodeState::Ready as i32);
    // The exec session it served ends (with an exit message or an error), and the sliver's
    // container is still there.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match exec.message().await {
                Ok(Some(m)) if !matches!(m.msg, Some(pb::exec_response::Msg::Exit(_))) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the exec session outlived the revocation");
    drop(tx);
    assert_eq!(common::testbed::containers(&name).await.len(), 1);
}

/// The real node manager renews its certificate at 2/3 of its life and reconnects with the
/// new one when the service closes the channel at the old one's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_manager_renews_its_certificate() {
    let svc = Service::start_with(
        "[nodes]\nheartbeat_interval = \"500ms\"\nmissed_heartbeats = 3\ncert_ttl = \"6s\"\n",
    )
    .await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let name = unique("renew");
    let nm = NodeManager::start(&svc, "mit", &name).await;
    wait_ready(&a, 1).await;
    let first = std::fs::read_to_string(nm.state_dir.join("node.crt")).unwrap();
    wait_for("a renewed certificate", Duration::from_secs(20), || {
        let now = std::fs::read_to_string(nm.state_dir.join("node.crt")).unwrap_or_default();
        let first = first.clone();
        async move { (!now.is_empty() && now != first).then_some(()) }
    })
    .await;
    // Past the first certificate's end the node is connected again, with the new one.
    wait_for(
        "a reconnect after the first certificate expired",
        Duration::from_secs(30),
        || {
            let a = a.clone();
            let name = name.clone();
            async move {
                let ev = actions(&events(&a, &format!("node/{name}")).await);
                (ev.iter().filter(|x| *x == "connected").count() >= 2).then_some(())
            }
        },
    )
    .await;
    wait_ready(&a, 1).await;
    assert!(!nm.log().contains("identity refused"), "{}", nm.log());
}
