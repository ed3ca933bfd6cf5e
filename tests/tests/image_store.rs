//! The image store over real gRPC against a real slice-service (SQLite, or PostgreSQL with
//! `SLICEBED_TEST_POSTGRES`): pushes by raw RPCs — chunked, interrupted and resumed —, a wrong
//! digest refused with nothing stored, size limits and the site quota, private images hidden
//! from other users, PUBLIC set by admins only, garbage collection that keeps shared layers, a
//! node's fetch refused for an image it does not run, and the read-only `/v2` API pulled by
//! the real Docker engine (`registry.rs`), and a slice's pull credential for Kubernetes sites
//! (`pull_access.rs`).

mod common;
#[path = "image_store/pull_access.rs"]
mod pull_access;
#[path = "image_store/push.rs"]
mod push;
#[path = "image_store/quota.rs"]
mod quota;
#[path = "image_store/registry.rs"]
mod registry;

use common::*;
use push::*;
use slicebed_image::Digest;
use slicebed_proto::v1 as pb;
use slicebed_tests::node::{enroll, enroll_request};
use slicebed_tests::{Clients, Service};
use tonic::Code;

const MI: u64 = 1 << 20;

/// A service with sites mit and eth, users alice and bob (mit) and carol (eth).
async fn world(config: &str) -> (Service, Clients, [Images; 4]) {
    let svc = Service::start_with(config).await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "mit").await;
    make_site(&admin, "eth").await;
    let alice = make_user(&admin, "alice", "mit").await;
    let bob = make_user(&admin, "bob", "mit").await;
    let carol = make_user(&admin, "carol", "eth").await;
    let imgs = [
        images(&svc, &svc.admin_token).await,
        images(&svc, &alice).await,
        images(&svc, &bob).await,
        images(&svc, &carol).await,
    ];
    (svc, admin, imgs)
}

fn blob_file(svc: &Service, d: &str) -> std::path::PathBuf {
    svc.dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_push_resumes_and_a_second_push_sends_only_the_new_layer() {
    let (svc, admin, [_, mut alice, ..]) = world("").await;
    let l1 = bytes(1, 3 * MI as usize + 12345);
    let d1 = Digest::of(&l1).to_string();
    // Two chunks, then the stream ends: the store keeps them.
    let r = push_chunks(&mut alice, &l1, 0, Some(2))
        .await
        .expect("partial push");
    assert!(!r.complete);
    assert_eq!(r.received, 2 * MI);
    let st = status(&mut alice, &[&d1]).await;
    assert!(!st[0].present);
    assert_eq!(st[0].received, 2 * MI, "BlobStatus tells where to resume");
    // A chunk at the wrong offset is refused, naming where to resume.
    let e = push_chunks(&mut alice, &l1, 0, None).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains(&format!("resume from offset {}", 2 * MI)),
        "{}",
        e.message()
    );
    let r = push_chunks(&mut alice, &l1, 2 * MI, None)
        .await
        .expect("resumed push");
    assert!(r.complete && r.received == l1.len() as u64, "{r:?}");
    assert_eq!(
        std::fs::read(blob_file(&svc, &d1)).unwrap(),
        l1,
        "the stored blob is the bytes pushed"
    );

    let l2 = bytes(2, 700_000);
    let first = push_image(&mut alice, "alice/tool:v1", &[&l1, &l2], "one")
        .await
        .expect("first push");
    assert_eq!(
        first.sent,
        vec![Digest::of(&l2).to_string(), first.config.clone()]
    );
    let img = first.image;
    assert_eq!(img.digest, first.digest);
    assert_eq!(img.tags, vec!["v1"]);
    assert_eq!(img.owner, "alice");
    assert_eq!(img.site, "mit");
    assert_eq!(img.visibility, pb::ImageVisibility::Private as i32);
    assert_eq!(img.layers.len(), 2);
    assert_eq!(
        img.size,
        first.manifest_len + first.config_len + (l1.len() + l2.len()) as u64
    );

    // v2 adds a layer: only it (and the new config) travel.
    let l3 = bytes(3, 500_000);
    let second = push_image(&mut alice, "alice/tool:v2", &[&l1, &l2, &l3], "two")
        .await
        .expect("second push");
    assert_eq!(
        second.sent,
        vec![Digest::of(&l3).to_string(), second.config.clone()]
    );
    let listed = alice
        .list_images(pb::ListImagesRequest {
            name: "alice/tool".into(),
            mine: false,
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(
        listed.iter().map(|i| i.digest.clone()).collect::<Vec<_>>(),
        vec![first.digest.clone(), second.digest.clone()]
    );
    // Stored once: one file per blob, whatever the number of images using it.
    assert!(blob_file(&svc, &d1).is_file());
    let ev = events(&admin, "image/alice/tool").await;
    assert_eq!(
        ev.iter().filter(|e| e.action == "image.commit").count(),
        2,
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_bytes_are_not_its_digest_is_refused_and_nothing_is_stored() {
    let (svc, _, [_, mut alice, ..]) = world("").await;
    let real = bytes(4, 1_500_000);
    let claimed = Digest::of(b"something else").to_string();
    let e = push_as(&mut alice, &claimed, &real).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("digest mismatch") && e.message().contains(&claimed),
        "{}",
        e.message()
    );
    let st = status(&mut alice, &[&claimed]).await;
    assert!(!st[0].present && st[0].received == 0, "{st:?}");
    assert!(!blob_file(&svc, &claimed).exists());
    assert!(!blob_file(&svc, &Digest::of(&real).to_string()).exists());
    let uploads: Vec<_> = std::fs::read_dir(svc.dir.join("uploads"))
        .unwrap()
        .collect();
    assert!(uploads.is_empty(), "no partial upload left: {uploads:?}");
    // A manifest naming blobs never pushed is refused, naming the missing one.
    let e = commit_raw(
        &mut alice,
        "alice/ghost:v1",
        &[(claimed.clone(), 10)],
        (claimed.clone(), 5),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains(&claimed), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_and_image_limits_and_the_site_quota_refuse_with_the_figures() {
    let cfg = "[images]\nmax_blob_size = \"1Mi\"\nmax_image_size = \"3Mi\"\nsite_quota = \"3Mi\"\n";
    let (_svc, _, [mut admin, mut alice, mut bob, mut carol]) = world(cfg).await;
    let big = bytes(5, MI as usize + 1);
    let e = push_as(&mut alice, &Digest::of(&big).to_string(), &big)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_blob_size"), "{}", e.message());

    let (a, b, c, d) = (
        bytes(6, 900_000),
        bytes(7, 900_000),
        bytes(8, 900_000),
        bytes(9, 900_000),
    );
    // As an admin (no site, so no site quota and no upload reservation): the image limit.
    let e = push_image(&mut admin, "admin/huge:v1", &[&a, &b, &c, &d], "x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_image_size"), "{}", e.message());
    push_image(&mut alice, "alice/one:v1", &[&a, &b], "a")
        .await
        .expect("1.8 MB fits");
    // Sharing a and b costs the site nothing more.
    push_image(&mut bob, "bob/same:v1", &[&a, &b], "b")
        .await
        .expect("shared layers count once");
    let e = push_image(&mut bob, "bob/two:v1", &[&c, &d], "c")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("site mit") && e.message().contains("quota"),
        "{}",
        e.message()
    );
    // Another site has its own quota.
    push_image(&mut carol, "carol/two:v1", &[&c, &d], "c")
        .await
        .expect("eth has room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_images_are_hidden_from_others_and_only_admins_make_them_public() {
    let (_svc, _, [mut admin, mut alice, mut bob, mut carol]) = world("").await;
    let l = bytes(10, 400_000);
    let pushed = push_image(&mut alice, "alice/secret:v1", &[&l], "s")
        .await
        .unwrap();
    let get = |r: &str| pb::GetImageRequest {
        reference: r.into(),
    };
    for (who, c) in [("bob", &mut bob), ("carol", &mut carol)] {
        let e = c.get_image(get("alice/secret:v1")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{who}: {e:?}");
        let e = c
            .get_image(get(&format!("alice/secret@{}", pushed.digest)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{who} by digest: {e:?}");
        let all = c
            .list_images(pb::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(
            all.iter().all(|i| i.name != "alice/secret"),
            "{who} lists it: {all:?}"
        );
    }
    // Knowing the digests does not let bob use alice's layer: he must hold its bytes.
    let layer = Digest::of(&l).to_string();
    assert!(!status(&mut bob, &[&layer]).await[0].present);
    let e = commit_raw(
        &mut bob,
        "bob/stolen:v1",
        &[(layer.clone(), l.len() as u64)],
        (pushed.config.clone(), pushed.config_len),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = bob
        .tag_image(pb::TagImageRequest {
            source: "alice/secret:v1".into(),
            target: "alice/secret:mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Public is the admins' to set; site is the owner's.
    let vis = |v: pb::ImageVisibility| pb::SetImageVisibilityRequest {
        name: "alice/secret".into(),
        visibility: v as i32,
    };
    let e = alice
        .set_image_visibility(vis(pb::ImageVisibility::Public))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    alice
        .set_image_visibility(vis(pb::ImageVisibility::Site))
        .await
        .unwrap();
    bob.get_image(get("alice/secret:v1"))
        .await
        .expect("same site");
    assert_eq!(
        carol
            .get_image(get("alice/secret:v1"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let e = bob
        .set_image_visibility(vis(pb::ImageVisibility::Private))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "bob sees it but does not own it"
    );
    let e = bob
        .delete_image(pb::DeleteImageRequest {
            reference: "alice/secret:v1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    admin
        .set_image_visibility(vis(pb::ImageVisibility::Public))
        .await
        .unwrap();
    let seen = carol
        .get_image(get("alice/secret:v1"))
        .await
        .expect("public")
        .into_inner();
    assert_eq!(seen.digest, pushed.digest);
    // The base image is there from the start, public, owned by the system.
    let base = carol
        .get_image(get("slicebed/base:latest"))
        .await
        .expect("base image")
        .into_inner();
    assert_eq!(
        (base.owner.as_str(), base.visibility),
        ("system", pb::ImageVisibility::Public as i32)
    );
    // Bad names are refused, naming the problem.
    let e = alice.get_image(get("Alice/Tool:v1")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("lowercase"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_images_collects_their_blobs_but_keeps_shared_layers() {
    let (svc, admin, [_, mut alice, ..]) = world("").await;
    let (l1, l2, l3) = (bytes(11, 300_000), bytes(12, 300_000), bytes(13, 300_000));
    let a = push_image(&mut alice, "alice/a:v1", &[&l1, &l2], "a")
        .await
        .unwrap();
    let b = push_image(&mut alice, "alice/b:v1", &[&l2, &l3], "b")
        .await
        .unwrap();
    let r = alice
        .delete_image(pb::DeleteImageRequest {
            reference: format!("alice/a@{}", a.digest),
        })
        .await
        .unwrap()
        .into_inner();
    // a's manifest, config and l1 go; l2 stays for b.
    assert_eq!(r.blobs_removed, 3, "{r:?}");
    assert_eq!(
        r.bytes_freed,
        a.manifest_len + a.config_len + l1.len() as u64
    );
    assert!(!blob_file(&svc, &Digest::of(&l1).to_string()).exists());
    assert!(!blob_file(&svc, &a.digest).exists());
    assert!(blob_file(&svc, &Digest::of(&l2).to_string()).exists());
    alice
        .get_image(pb::GetImageRequest {
            reference: "alice/b:v1".into(),
        })
        .await
        .expect("b intact");
    // Removing b's last tag removes b and what only it used.
    let r = alice
        .delete_image(pb::DeleteImageRequest {
            reference: "alice/b:v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.blobs_removed, 4, "{r:?}");
    for d in [
        Digest::of(&l2).to_string(),
        Digest::of(&l3).to_string(),
        b.digest.clone(),
        b.config.clone(),
    ] {
        assert!(!blob_file(&svc, &d).exists(), "{d} left behind");
    }
    let ev = events(&admin, "image/alice/b").await;
    assert!(ev.iter().any(|e| e.action == "image.delete"), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_stale_uploads_and_unreferenced_blobs() {
    let cfg = "[images]\ngc_grace = \"1s\"\ngc_interval = \"1s\"\n";
    let (svc, _, [_, mut alice, ..]) = world(cfg).await;
    let l = bytes(14, 2 * MI as usize + 5);
    let d = Digest::of(&l).to_string();
    push_chunks(&mut alice, &l, 0, Some(1)).await.unwrap();
    let lone = bytes(15, 1000);
    push_as(&mut alice, &Digest::of(&lone).to_string(), &lone)
        .await
        .unwrap();
    let lone_file = blob_file(&svc, &Digest::of(&lone).to_string());
    assert!(lone_file.exists());
    slicebed_tests::wait_for(
        "the sweep to remove the stale upload and the unreferenced blob",
        std::time::Duration::from_secs(20),
        || {
            let uploads = svc.dir.join("uploads");
            let lone_file = lone_file.clone();
            async move {
                let empty = std::fs::read_dir(&uploads)
                    .map(|mut r| r.next().is_none())
                    .unwrap_or(false);
                (empty && !lone_file.exists()).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        status(&mut alice, &[&d]).await[0].received,
        0,
        "the resume starts over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_public_blobs_but_not_images_it_does_not_run() {
    let (svc, admin, [_, mut alice, ..]) = world("").await;
    let l = bytes(16, 2 * MI as usize + 77);
    let pushed = push_image(&mut alice, "alice/tool:v1", &[&l], "t")
        .await
        .unwrap();
    let tok = admin
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
    let cred = enroll(
        &svc,
        &tok,
        enroll_request("n1", 1000, 1 << 30, (31000, 31999)),
    )
    .await
    .unwrap();
    let mut node = Clients::with_identity(&svc, None, &cred)
        .await
        .unwrap()
        .node;
    let base = alice
        .get_image(pb::GetImageRequest {
            reference: "slicebed/base:latest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Public: the whole layer, resumed from an offset too, and it verifies.
    let layer = &base.layers[0];
    let whole = fetch(&mut node, &layer.digest, 0)
        .await
        .expect("public layer");
    assert_eq!(Digest::of(&whole).to_string(), layer.digest);
    let tail = fetch(&mut node, &layer.digest, 1000).await.unwrap();
    assert_eq!(tail, whole[1000..]);
    let e = fetch(&mut node, &layer.digest, whole.len() as u64 + 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    // alice's private image runs nowhere: refused, and the refusal is in the event log.
    for d in [&pushed.digest, &Digest::of(&l).to_string()] {
        let e = fetch(&mut node, d, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{d}: {e:?}");
    }
    let ev = events(&admin, &format!("blob/{}", pushed.digest)).await;
    assert!(
        ev.iter()
            .any(|e| e.action == "image.fetch_denied" && e.actor == "node/n1"),
        "{ev:?}"
    );
    let ev = events(&admin, &format!("blob/{}", layer.digest)).await;
    assert!(
        ev.iter()
            .any(|e| e.action == "image.fetch" && e.actor == "node/n1"),
        "{ev:?}"
    );
    // A user token is no node identity.
    let mut as_user = Clients::new(&svc, Some(&svc.admin_token)).await.node;
    assert_eq!(
        fetch(&mut as_user, &layer.digest, 0)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}
