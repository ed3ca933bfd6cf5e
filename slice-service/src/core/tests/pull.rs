//! Pull credentials in-process: what the desired sliver carries to a Kubernetes site, and
//! what the registry's checks (`pull_scope`, `pull_manifest`, `pull_blob`) let it open: the
//! slice's pinned image only, never by tag, not after the lease or the slice ends, and never
//! as a token of the gRPC API.

use std::time::Duration;

use slicebed_image::Digest;

use super::images::push;
use super::{spec, TestBed};
use crate::api::convert;
use crate::error::Error;
use crate::images::pull::PullIssuer;

fn denied<T: std::fmt::Debug>(r: crate::error::Result<T>) -> bool {
    matches!(r, Err(Error::Denied(_)))
}

fn refused<T: std::fmt::Debug>(r: crate::error::Result<T>) -> String {
    match r {
        Err(Error::Unauthenticated(m)) => m,
        other => panic!("expected a refused credential, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pull_credential_opens_its_slice_image_only_while_the_slice_lives() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let tool = push(&bed, &alice, "alice/tool:v1", b"tool layer").await;
    let other = push(&bed, &alice, "alice/other:v1", b"other layer").await;
    bed.core
        .set_pull_issuer(PullIssuer::new([9; 32], "registry.example:5000"));

    let mut s = spec("exp", 1);
    s.image = "alice/tool:v1".into();
    s.lease = Some(Duration::from_secs(3600));
    bed.core.create_slice(&alice, s).await.unwrap();
    let slice = bed.slice("exp").await.unwrap();
    let sliver = bed.slivers("exp").await.remove(0);
    let d = convert::desired(&slice, &sliver, bed.core.pull_issuer());
    let pa = d
        .pull_access
        .expect("a pinned slice carries a pull credential");
    assert_eq!(pa.registry, "registry.example:5000");
    assert_eq!(pa.repository, "alice/tool");
    assert_eq!(pa.expires_at, convert::ts(slice.lease_expires_at));
    assert_eq!(d.image_digest, tool);
    // Without a registry served, nothing is sent.
    assert!(convert::desired(&slice, &sliver, None)
        .pull_access
        .is_none());

    let scope = bed.core.pull_scope(&pa.password).await.unwrap();
    let (got, _) = bed
        .core
        .pull_manifest(&scope, "alice/tool", &tool)
        .await
        .unwrap();
    assert_eq!(got.as_str(), tool);
    let layer = Digest::of(b"tool layer");
    bed.core
        .pull_blob(&scope, "alice/tool", layer.as_str())
        .await
        .expect("its layer");
    // Never by tag, never another image or another image's blob, even in its repository.
    assert!(denied(
        bed.core.pull_manifest(&scope, "alice/tool", "v1").await
    ));
    assert!(denied(
        bed.core.pull_manifest(&scope, "alice/other", &other).await
    ));
    assert!(denied(
        bed.core.pull_manifest(&scope, "alice/tool", &other).await
    ));
    let other_layer = Digest::of(b"other layer");
    for repo in ["alice/tool", "alice/other"] {
        assert!(denied(
            bed.core.pull_blob(&scope, repo, other_layer.as_str()).await
        ));
    }
    // Not a token of the gRPC API.
    let mut c = bed.core.db.conn().await.unwrap();
    assert!(matches!(
        crate::auth::authenticate(&mut c, &pa.password).await,
        Err(Error::Unauthenticated(_))
    ));
    drop(c);
    // Altered (a later expiry under the same MAC) or from another service: refused.
    let later = pa.password.replacen(
        &format!(".{}.", slice.lease_expires_at),
        &format!(".{}.", slice.lease_expires_at + 86_400_000),
        1,
    );
    assert_ne!(later, pa.password);
    refused(bed.core.pull_scope(&later).await);
    let foreign = PullIssuer::new([1; 32], "x:1").mint(&slice.id, slice.lease_expires_at);
    refused(bed.core.pull_scope(&foreign).await);

    // Renewed: a new credential until the new end; the old one ends with the old lease.
    bed.advance(Duration::from_secs(1800));
    bed.heartbeat("n1");
    bed.core
        .renew_slice(&alice, "exp", Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    let renewed = bed.slice("exp").await.unwrap();
    let new = convert::desired(&renewed, &sliver, bed.core.pull_issuer())
        .pull_access
        .unwrap();
    assert_ne!(new.password, pa.password);
    assert_eq!(new.expires_at, convert::ts(renewed.lease_expires_at));
    bed.advance(Duration::from_secs(1800));
    bed.heartbeat("n1");
    let why = refused(bed.core.pull_scope(&pa.password).await);
    assert!(why.contains("expired"), "{why}");
    bed.core.pull_scope(&new.password).await.expect("renewed");

    // Deleted: refused at once, though its expiry is still ahead.
    bed.core.delete_slice(&alice, "exp").await.unwrap();
    let why = refused(bed.core.pull_scope(&new.password).await);
    assert!(why.contains("ended"), "{why}");
}

#[tokio::test]
async fn a_credential_ends_with_the_lease_even_before_the_reaper_runs() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    push(&bed, &alice, "alice/tool:v1", b"tool layer").await;
    bed.core.set_pull_issuer(PullIssuer::new([9; 32], "r:1"));
    let mut s = spec("short", 1);
    s.image = "alice/tool:v1".into();
    s.lease = Some(Duration::from_secs(60));
    bed.core.create_slice(&alice, s).await.unwrap();
    let slice = bed.slice("short").await.unwrap();
    let sliver = bed.slivers("short").await.remove(0);
    let pa = convert::desired(&slice, &sliver, bed.core.pull_issuer())
        .pull_access
        .unwrap();
    bed.core.pull_scope(&pa.password).await.unwrap();
    // The lease ends (before any reaper runs): the credential opens nothing.
    bed.advance(Duration::from_secs(60));
    refused(bed.core.pull_scope(&pa.password).await);
}
