//! A slice's life after creation: renewal and deletion, as owners and strangers see them.

use super::*;
use crate::error::Error;
use crate::model::SliceLife;

#[tokio::test]
async fn delete_stops_every_sliver_and_tells_each_node() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    bed.node("n2", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let bob = bed.user("bob", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 2))
        .await
        .unwrap();
    bed.sent("n1");
    bed.sent("n2");

    // Someone else's slice does not exist as far as a stranger can tell.
    let err = bed.core.delete_slice(&bob, "demo").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(bed.slice("demo").await.unwrap().life, SliceLife::Live);

    bed.core.delete_slice(&alice, "demo").await.unwrap();

    assert_eq!(bed.slice("demo").await.unwrap().life, SliceLife::Deleted);
    let slivers = bed.slivers("demo").await;
    assert!(slivers.iter().all(|v| v.state == SliverState::Stopping));
    for v in &slivers {
        assert_eq!(bed.sent(&v.node), [Sent::Remove(v.id.clone())]);
    }
    let evs = bed.slice_events("demo").await;
    let stopping = evs.iter().filter(|e| e.action == "state stopping").count();
    assert_eq!(stopping, 2);
    let last = evs.last().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.object.as_str(),
            last.action.as_str()
        ),
        ("user/alice", "slice/demo", "deleted")
    );
    // The name is free again at once; the old slivers still hold their capacity meanwhile.
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn renew_moves_the_lease_and_tells_the_nodes() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let mut s = spec("demo", 1);
    s.lease = Some(Duration::from_secs(3600));
    bed.core.create_slice(&alice, s).await.unwrap();
    let id = bed.slivers("demo").await.remove(0).id;
    bed.sent("n1");

    bed.advance(Duration::from_secs(1800));
    bed.heartbeat("n1");
    let renewed = bed
        .core
        .renew_slice(&alice, "demo", Some(Duration::from_secs(7200)))
        .await
        .unwrap();

    assert_eq!(renewed.note, "");
    let slice = bed.slice("demo").await.unwrap();
    assert_eq!(slice.lease_expires_at, bed.core.now_ms() + 7_200_000);
    assert_eq!(
        bed.sent("n1"),
        [Sent::Upsert(id)],
        "nodes enforce leases too"
    );
    let last = bed.slice_events("demo").await.pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail.as_str()),
        ("renewed", "lease 2h")
    );
    // The old end passes without the slice ending.
    bed.advance(Duration::from_secs(3600));
    assert_eq!(bed.core.reap_expired().await.unwrap(), 0);

    // More than the maximum is granted as the maximum, with a note.
    let max = bed.core.cfg.lease_max;
    let renewed = bed
        .core
        .renew_slice(&alice, "demo", Some(max * 2))
        .await
        .unwrap();
    assert!(renewed.note.starts_with("granted "), "{}", renewed.note);
    assert_eq!(
        bed.slice("demo").await.unwrap().lease_expires_at,
        bed.core.now_ms() + max.as_millis() as i64
    );
}
