//! Leases: the reaper ends a slice, nodes are told to remove its slivers, and their
//! capacity is free again only once the node confirms the removal.

use super::*;
use crate::error::Error;
use crate::model::SliceLife;

#[tokio::test]
async fn an_expired_lease_stops_slivers_and_frees_capacity_once_removed() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 1000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let mut s = spec("demo", 1);
    s.resources = Resources::new(1000, 256 << 20, 1 << 30);
    s.lease = Some(Duration::from_secs(3600));
    bed.core.create_slice(&alice, s.clone()).await.unwrap();
    let id = bed.slivers("demo").await.remove(0).id;
    bed.report("n1", &id, SliverState::Running, "").await;
    bed.sent("n1");

    bed.advance(Duration::from_secs(1800));
    bed.heartbeat("n1");
    assert_eq!(bed.core.reap_expired().await.unwrap(), 0, "half way");

    bed.advance(Duration::from_secs(1801));
    bed.heartbeat("n1");
    assert_eq!(bed.core.reap_expired().await.unwrap(), 1);

    assert_eq!(bed.slice("demo").await.unwrap().life, SliceLife::Expired);
    assert_eq!(bed.sliver(&id).await.state, SliverState::Stopping);
    assert_eq!(bed.sent("n1"), [Sent::Remove(id.clone())]);
    let evs = bed.slice_events("demo").await;
    assert!(evs
        .iter()
        .any(|e| e.object == "slice/demo" && e.action == "expired" && e.actor == "system"));
    // A stopping sliver still holds its node's capacity.
    let err = bed
        .core
        .create_slice(&alice, spec_like(&s, "next"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exhausted(_)), "{err:?}");

    bed.report("n1", &id, SliverState::Deleted, "").await;

    assert_eq!(bed.sliver(&id).await.state, SliverState::Deleted);
    bed.core
        .create_slice(&alice, spec_like(&s, "next"))
        .await
        .unwrap();
    assert_eq!(bed.sent("n1").len(), 1);
}

fn spec_like(s: &SliceSpec, name: &str) -> SliceSpec {
    SliceSpec {
        name: name.into(),
        ..s.clone()
    }
}
