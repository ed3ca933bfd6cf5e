//! The pull credential a Kubernetes site gets with a pinned slice's slivers, used as a cluster
//! would: the real Docker engine logs in with it and pulls the pinned image by digest from the
//! read-only `/v2` registry; the same credential is refused for another image, by tag, after
//! the slice is deleted, after its lease ends, and on the gRPC API.

use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_tests::node::TestNode;
use slicebed_tests::{Clients, Service};
use tonic::Code;

use super::push::*;
use super::registry::{docker, http as http_with, layer_with};

/// The pull credential of the next sliver the service sends `node`.
async fn pull_access(node: &mut TestNode) -> pb::PullAccess {
    loop {
        let m = node
            .recv(Duration::from_secs(30))
            .await
            .expect("the service sends the sliver");
        if let Some(pb::service_message::Msg::Upsert(d)) = m.msg {
            return d
                .pull_access
                .expect("a pinned sliver carries a pull credential");
        }
    }
}

async fn create(alice: &Clients, name: &str, image: &str, lease_secs: i64) {
    let mut req = super::slice_req(name, 1, 64 << 20);
    req.image = image.into();
    req.lease = Some(prost_types::Duration {
        seconds: lease_secs,
        nanos: 0,
    });
    alice
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create slice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_pull_credential_pulls_its_pinned_image_and_nothing_else() {
    let svc = Service::start_with("[registry]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = std::fs::read_to_string(svc.dir.join("registry.addr")).expect("registry.addr");
    let admin = Clients::admin(&svc).await;
    super::make_site(&admin, "mit").await;
    let alice_tok = super::make_user(&admin, "alice", "mit").await;
    let alice = Clients::new(&svc, Some(&alice_tok)).await;
    let mut imgs = images(&svc, &alice_tok).await;
    let hello = push_image(
        &mut imgs,
        "alice/hello:v1",
        &[&layer_with("hello.txt", "pulled by a cluster\n")],
        "hello",
    )
    .await
    .expect("push hello");
    let other = push_image(
        &mut imgs,
        "alice/other:v1",
        &[&layer_with("other.txt", "not for this slice\n")],
        "other",
    )
    .await
    .expect("push other");
    let mut node = TestNode::join(&svc, "mit", "k1", 2000, 4 << 30).await;

    create(&alice, "exp", "alice/hello:v1", 3600).await;
    let pa = pull_access(&mut node).await;
    assert_eq!(
        pa.registry, addr,
        "the registry's own address when none is advertised"
    );
    assert_eq!(pa.repository, "alice/hello");
    assert!(pa.password.starts_with("sbp_"));

    // The real engine, as a cluster's node would: log in and pull by digest (every digest
    // verified by the engine).
    let cfg = tempfile::tempdir().unwrap();
    let (ok, out) = docker(
        cfg.path(),
        &["login", &addr, "-u", &pa.username, "--password-stdin"],
        Some(&pa.password),
    );
    assert!(ok, "docker login with the pull credential: {out}");
    let pinned = format!("{addr}/alice/hello@{}", hello.digest);
    let (ok, out) = docker(cfg.path(), &["pull", &pinned], None);
    assert!(ok, "docker pull {pinned}: {out}");
    let (ok, out) = docker(cfg.path(), &["image", "inspect", &pinned], None);
    assert!(ok, "the pulled image is in the engine: {out}");
    for refused in [
        format!("{addr}/alice/other@{}", other.digest),
        format!("{addr}/alice/hello:v1"),
    ] {
        let (ok, out) = docker(cfg.path(), &["pull", &refused], None);
        assert!(
            !ok,
            "{refused} must not be pulled with this credential: {out}"
        );
    }
    let _ = docker(cfg.path(), &["rmi", "-f", &pinned], None);

    // Raw HTTP: the manifest and its blobs open, another image's are refused (403).
    let bearer = Some(pa.password.as_str());
    let manifest = format!("/v2/alice/hello/manifests/{}", hello.digest);
    assert_eq!(http_with(&addr, "GET", &manifest, bearer).0, 200);
    assert_eq!(
        http_with(
            &addr,
            "GET",
            &format!("/v2/alice/hello/blobs/{}", hello.config),
            bearer
        )
        .0,
        200
    );
    let (st, _, body) = http_with(
        &addr,
        "GET",
        &format!("/v2/alice/other/manifests/{}", other.digest),
        bearer,
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("opens only alice/hello@"));
    assert_eq!(
        http_with(
            &addr,
            "GET",
            &format!("/v2/alice/hello/blobs/{}", other.config),
            bearer
        )
        .0,
        403
    );
    // Not a token of the gRPC API.
    let as_pull = Clients::new(&svc, Some(&pa.password)).await;
    let e = as_pull
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Deleted: refused at once.
    alice
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: "exp".into() })
        .await
        .expect("delete");
    let (st, _, body) = http_with(&addr, "GET", &manifest, bearer);
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("ended"));

    // A short lease: the credential works, then its lease ends and it opens nothing.
    create(&alice, "short", "alice/hello:v1", 4).await;
    let short = pull_access(&mut node).await;
    let bearer = Some(short.password.as_str());
    assert_eq!(http_with(&addr, "GET", &manifest, bearer).0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, _) = http_with(&addr, "GET", &manifest, bearer);
        if st == 401 {
            break;
        }
        assert_eq!(st, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the credential still opens the image long after its lease ended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
