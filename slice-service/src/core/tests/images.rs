//! The image store's rules in-process: pushing through the core's own calls, resolving
//! references for slices (what `slice create` pins), visibility, and the base image stored once.

use slicebed_image::{base, Digest, ImageConfig, Manifest, RootFs};

use super::TestBed;
use crate::auth::Principal;
use crate::core::Push;
use crate::error::Error;
use crate::store::Visibility;

/// Uploads `data` as `p` through push_begin / append / push_finish.
async fn upload(bed: &TestBed, p: &Principal, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    match bed
        .core
        .push_begin(p, d.as_str(), data.len() as u64)
        .await
        .unwrap()
    {
        Push::Done { .. } => {}
        Push::Upload { user, mut upload } => {
            upload.append(0, data).await.unwrap();
            bed.core.push_finish(p, &user, upload, &d).await.unwrap();
        }
    }
    d
}

/// Pushes a one-layer image as `p` under `reference`; its digest.
pub(super) async fn push(bed: &TestBed, p: &Principal, reference: &str, layer: &[u8]) -> String {
    let l = upload(bed, p, layer).await;
    let config = serde_json::to_vec(&ImageConfig {
        created: None,
        architecture: "amd64".into(),
        os: "linux".into(),
        config: serde_json::json!({}),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![l.clone()],
        },
    })
    .unwrap();
    let c = upload(bed, p, &config).await;
    let m = Manifest::new((c, config.len() as u64), &[(l, layer.len() as u64)]).to_bytes();
    bed.core
        .commit_image(p, reference, &m)
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn references_resolve_to_digests_only_for_those_who_may_run_them() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await.site("eth").await;
    let alice = bed.user("alice", "mit").await;
    let bob = bed.user("bob", "mit").await;
    let carol = bed.user("carol", "eth").await;
    let v1 = push(&bed, &alice, "alice/tool:v1", b"layer one").await;
    let r = bed
        .core
        .resolve_image(&alice, "alice/tool:v1")
        .await
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.digest.as_str()),
        ("alice/tool", v1.as_str())
    );
    let e = bed
        .core
        .resolve_image(&alice, "alice/tool")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "no latest tag: {e}");
    let by_digest = bed
        .core
        .resolve_image(&alice, &format!("alice/tool@{v1}"))
        .await
        .unwrap();
    assert_eq!(by_digest.digest.as_str(), v1);
    // Re-pushing the tag moves it; the old digest still resolves (slices pinned it).
    let v2 = push(&bed, &alice, "alice/tool:v1", b"layer two").await;
    assert_ne!(v1, v2);
    assert_eq!(
        bed.core
            .resolve_image(&alice, "alice/tool:v1")
            .await
            .unwrap()
            .digest
            .as_str(),
        v2
    );
    assert!(bed
        .core
        .resolve_image(&alice, &format!("alice/tool@{v1}"))
        .await
        .is_ok());
    for (who, p) in [("bob", &bob), ("carol", &carol)] {
        let e = bed
            .core
            .resolve_image(p, "alice/tool:v1")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{who}: {e}");
    }
    assert!(bed
        .core
        .resolve_image(&bed.admin, "alice/tool:v1")
        .await
        .is_ok());
    bed.core
        .set_image_visibility(&alice, "alice/tool", Visibility::Site)
        .await
        .unwrap();
    assert!(
        bed.core.resolve_image(&bob, "alice/tool:v1").await.is_ok(),
        "same site"
    );
    assert!(bed
        .core
        .resolve_image(&carol, "alice/tool:v1")
        .await
        .is_err());
    assert!(matches!(
        bed.core.resolve_image(&alice, "Alice/Tool").await,
        Err(Error::Invalid(_))
    ));
    let ev = bed.object_events("image/alice/tool").await;
    assert_eq!(ev.iter().filter(|e| e.action == "image.commit").count(), 2);
    assert!(ev
        .iter()
        .any(|e| e.action == "image.visibility" && e.detail == "site"));
}

#[tokio::test]
async fn the_base_image_is_stored_once_public_and_owned_by_the_system() {
    let bed = TestBed::new().await;
    if base::find_static_busybox().is_none() {
        eprintln!(
            "NOTICE: no static busybox on this host (apt-get install busybox-static): skipped"
        );
        return;
    }
    let first = bed.core.ensure_base_image().await.unwrap().expect("built");
    let again = bed.core.ensure_base_image().await.unwrap().expect("kept");
    assert_eq!(first, again);
    assert_eq!(
        first,
        base::build_from_host().unwrap().digest(),
        "deterministic"
    );
    let img = bed
        .core
        .get_image(&bed.admin, "slicebed/base:latest")
        .await
        .unwrap();
    assert_eq!(
        (img.owner.as_str(), img.visibility),
        ("system", Visibility::Public)
    );
    let ev = bed.object_events("image/slicebed/base").await;
    assert_eq!(ev.iter().filter(|e| e.action == "image.commit").count(), 1);
}

#[tokio::test]
async fn parallel_uploads_cannot_together_overshoot_the_site_quota() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    let alice = bed.user("alice", "mit").await;
    let bob = bed.user("bob", "mit").await;
    bed.core
        .set_site_image_quota(&bed.admin, "mit", Some(100))
        .await
        .unwrap();
    let (a, b) = ([1u8; 60], [2u8; 60]);
    let (da, db) = (Digest::of(&a), Digest::of(&b));
    // Both start at once: 60 + 60 > 100, so exactly one may go on. (On SQLite the one write
    // connection already serialises the two; on PostgreSQL it is `BlobDir::quota_lock`.)
    let (ra, rb) = tokio::join!(
        bed.core.push_begin(&alice, da.as_str(), 60),
        bed.core.push_begin(&bob, db.as_str(), 60)
    );
    let (winner, loser) = match (ra, rb) {
        (Ok(Push::Upload { user, upload }), Err(e)) => ((alice.clone(), user, upload, da), e),
        (Err(e), Ok(Push::Upload { user, upload })) => ((bob.clone(), user, upload, db), e),
        other => panic!("exactly one upload must start: {other:?}"),
    };
    assert!(
        matches!(&loser, Error::Exhausted(m) if m.contains("reserved")),
        "{loser}"
    );
    let storage = bed
        .core
        .site_image_storage(&bed.admin, "mit")
        .await
        .unwrap();
    assert_eq!((storage.reserved, storage.quota), (60, 100));

    // The winner completes its blob but never commits an image: after the grace period the
    // sweep releases the reservation (and collects the blob), and the space is free again.
    let (p, user, mut upload, d) = winner;
    let data = if d == Digest::of(&a) { a } else { b };
    upload.append(0, &data).await.unwrap();
    bed.core.push_finish(&p, &user, upload, &d).await.unwrap();
    bed.core.gc_sweep().await.unwrap();
    let kept = bed
        .core
        .site_image_storage(&bed.admin, "mit")
        .await
        .unwrap();
    assert_eq!(
        kept.reserved, 60,
        "within the grace period the push may still commit"
    );
    bed.advance(bed.core.cfg.images.gc_grace + std::time::Duration::from_secs(1));
    bed.core.gc_sweep().await.unwrap();
    let freed = bed
        .core
        .site_image_storage(&bed.admin, "mit")
        .await
        .unwrap();
    assert_eq!(freed.reserved, 0);
    let c = [3u8; 90];
    assert!(matches!(
        bed.core
            .push_begin(&alice, Digest::of(&c).as_str(), 90)
            .await,
        Ok(Push::Upload { .. })
    ));
}

#[tokio::test]
async fn only_admins_set_site_image_quotas_and_unknown_sites_are_named() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    let alice = bed.user("alice", "mit").await;
    let e = bed
        .core
        .set_site_image_quota(&alice, "mit", Some(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied(_)), "{e}");
    let e = bed
        .core
        .set_site_image_quota(&bed.admin, "nowhere", Some(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let s = bed
        .core
        .set_site_image_quota(&bed.admin, "mit", None)
        .await
        .unwrap();
    assert!(!s.overridden);
    assert_eq!(s.quota, bed.core.cfg.images.site_quota);
}
