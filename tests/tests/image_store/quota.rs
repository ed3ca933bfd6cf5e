//! Per-site image quotas: set by admins only (PIs and users refused), shown with the site's
//! use, a quota below use accepted but blocking new pushes, and uploads in progress reserving
//! their declared size so parallel pushes cannot overshoot the quota until the sweep releases
//! an abandoned one.

use slicebed_image::Digest;
use slicebed_proto::v1 as pb;
use slicebed_tests::{wait_for, Clients};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::common::make_user_as;
use crate::push::*;
use crate::{world, MI};

async fn set_quota(
    who: &Clients,
    site: &str,
    quota: Option<u64>,
) -> Result<pb::Site, tonic::Status> {
    who.admin
        .clone()
        .set_site_image_quota(pb::SetSiteImageQuotaRequest {
            site: site.into(),
            quota_bytes: quota,
        })
        .await
        .map(|r| r.into_inner())
}

async fn storage(who: &Clients, site: &str) -> pb::SiteImageStorage {
    who.admin
        .clone()
        .get_site(pb::GetSiteRequest { name: site.into() })
        .await
        .expect("GetSite")
        .into_inner()
        .images
        .expect("a site answer carries its image storage")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_a_site_image_quota_and_one_below_use_blocks_new_pushes() {
    let (svc, admin, [_, mut alice, ..]) = world("").await;
    let pi = make_user_as(&admin, "pat", pb::Role::Pi, "mit").await;
    let pi = Clients::new(&svc, Some(&pi)).await;
    let user = Clients::new(&svc, Some(&svc_token(&admin, "alice2").await)).await;

    // The default until an admin says otherwise.
    let s = storage(&admin, "mit").await;
    assert_eq!((s.quota_bytes, s.quota_overridden), (20 << 30, false));
    for (who, what) in [(&pi, "the site's PI"), (&user, "a user")] {
        let e = set_quota(who, "mit", Some(100 * MI)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    }
    assert_eq!(
        set_quota(&admin, "atlantis", Some(MI))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let site = set_quota(&admin, "mit", Some(3 * MI)).await.unwrap();
    let s = site.images.unwrap();
    assert_eq!((s.quota_bytes, s.quota_overridden), (3 * MI, true));
    assert_eq!(
        storage(&admin, "eth").await.quota_bytes,
        20 << 30,
        "eth keeps the default"
    );

    let (a, b) = (bytes(40, 900_000), bytes(41, 900_000));
    let pushed = push_image(&mut alice, "alice/q:v1", &[&a, &b], "q")
        .await
        .unwrap();
    let s = storage(&admin, "mit").await;
    assert_eq!(
        s.used_bytes, pushed.image.size,
        "manifest, config and layers, once each"
    );
    assert_eq!(
        s.reserved_bytes, 0,
        "a committed image holds no reservation"
    );
    // Everyone may read a site's use, as they read the site.
    assert_eq!(storage(&pi, "mit").await.used_bytes, s.used_bytes);

    // Lowered below what the site holds: accepted, and the next push is refused, naming
    // what is used and the limit.
    set_quota(&admin, "mit", Some(MI))
        .await
        .expect("below use is accepted");
    let c = bytes(42, 300_000);
    let e = push_image(&mut alice, "alice/q:v2", &[&c], "q2")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    for want in ["site mit", &s.used_bytes.to_string(), &MI.to_string()] {
        assert!(e.message().contains(want), "{want} in {}", e.message());
    }
    // What the site holds stays readable; re-tagging adds no bytes and passes.
    alice
        .tag_image(pb::TagImageRequest {
            source: "alice/q:v1".into(),
            target: "alice/q:stable".into(),
        })
        .await
        .expect("a tag costs nothing");

    // Back to the default: the push goes through.
    let site = set_quota(&admin, "mit", None).await.unwrap();
    assert!(!site.images.unwrap().quota_overridden);
    push_image(&mut alice, "alice/q:v2", &[&c], "q2")
        .await
        .expect("the default quota has room");
    let ev = crate::common::events(&admin, "site/mit").await;
    assert!(
        ev.iter().filter(|e| e.action == "site.image_quota").count() >= 3,
        "{ev:?}"
    );
}

/// A token of a new user of mit.
async fn svc_token(admin: &Clients, name: &str) -> String {
    crate::common::make_user(admin, name, "mit").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_progress_reserves_its_size_until_the_sweep_releases_it() {
    let cfg = "[images]\ngc_grace = \"2s\"\ngc_interval = \"1s\"\n";
    let (svc, admin, [_, alice, mut bob, _]) = world(cfg).await;
    set_quota(&admin, "mit", Some(3 * MI)).await.unwrap();

    // alice's 2 MiB upload: one chunk sent, the stream held open.
    let x = bytes(50, 2 * MI as usize + 5);
    let xd = Digest::of(&x).to_string();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::BlobChunk {
        digest: xd.clone(),
        offset: 0,
        data: x[..MI as usize].to_vec(),
        size: x.len() as u64,
    })
    .await
    .unwrap();
    let mut pusher = alice.clone();
    let upload = tokio::spawn(async move { pusher.push_blob(ReceiverStream::new(rx)).await });
    wait_for(
        "alice's first chunk stored",
        std::time::Duration::from_secs(20),
        || {
            let mut a = alice.clone();
            let xd = xd.clone();
            async move { (status(&mut a, &[&xd]).await[0].received == MI).then_some(()) }
        },
    )
    .await;
    let s = storage(&admin, "mit").await;
    assert_eq!(
        s.reserved_bytes,
        x.len() as u64,
        "the declared size, not the bytes so far"
    );

    // bob's 2 MiB would fit beside what is stored, not beside alice's reservation.
    let y = bytes(51, 2 * MI as usize);
    let yd = Digest::of(&y).to_string();
    let e = push_as(&mut bob, &yd, &y).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("site mit") && e.message().contains("reserved by uploads in progress"),
        "{}",
        e.message()
    );
    assert_eq!(
        status(&mut bob, &[&yd]).await[0].received,
        0,
        "nothing of it kept"
    );

    // alice abandons her push; once the sweep has removed it, the space is bob's.
    drop(tx);
    let r = upload
        .await
        .unwrap()
        .expect("an early end keeps what arrived");
    assert!(!r.into_inner().complete);
    wait_for(
        "the sweep to release the abandoned upload's reservation",
        std::time::Duration::from_secs(30),
        || {
            let mut b = bob.clone();
            let (yd, y) = (yd.clone(), y.clone());
            async move { push_as(&mut b, &yd, &y).await.ok().filter(|r| r.complete) }
        },
    )
    .await;
    let s = storage(&admin, "mit").await;
    // alice's reservation is gone; bob's stays until he commits or the sweep finds it stale.
    assert!(
        s.reserved_bytes == 0 || s.reserved_bytes == y.len() as u64,
        "{s:?}"
    );
    let gc = crate::common::events(&admin, "images").await;
    assert!(
        gc.iter()
            .any(|e| e.action == "image.gc" && e.detail.contains("1 upload reservations released")),
        "{gc:?}"
    );
    drop(svc);
}
