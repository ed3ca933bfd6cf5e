//! Creating a slice: rows, events and upserts on success; nothing at all on refusal.

use super::*;
use crate::error::Error;

#[tokio::test]
async fn create_writes_rows_and_events_and_pushes_each_sliver_to_its_node() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await.site("eth").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    bed.node("n2", "eth", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let mut s = spec("demo", 0);
    s.placement.per_site = 1;

    let (view, warnings) = bed.core.create_slice(&alice, s).await.unwrap();

    assert!(warnings.is_empty(), "{warnings:?}");
    let slice = bed.slice("demo").await.expect("slice row");
    assert_eq!(
        (slice.owner.as_str(), slice.site.as_str()),
        ("alice", "mit")
    );
    let slivers = bed.slivers("demo").await;
    assert_eq!(slivers.len(), 2);
    assert_eq!(view.slivers.len(), 2);
    assert!(slivers.iter().all(|v| v.state == SliverState::Pending));
    let on = |node: &str| {
        slivers
            .iter()
            .find(|v| v.node == node)
            .expect(node)
            .id
            .clone()
    };
    let (v1, v2) = (on("n1"), on("n2"));
    assert_eq!(bed.sent("n1"), [Sent::Upsert(v1.clone())]);
    assert_eq!(bed.sent("n2"), [Sent::Upsert(v2.clone())]);

    let evs = bed.slice_events("demo").await;
    assert!(evs.iter().all(|e| e.actor == "user/alice"), "{evs:?}");
    let placed: Vec<_> = evs.iter().filter(|e| e.action == "placed").collect();
    assert_eq!(placed.len(), 2);
    assert!(placed
        .iter()
        .any(|e| e.object == format!("sliver/{v1}") && e.detail == "on node n1 (mit)"));
    let created = evs.iter().find(|e| e.action == "created").expect("created");
    assert_eq!(created.object, "slice/demo");
    assert!(
        created.detail.starts_with("2 sliver(s) on eth, mit"),
        "{}",
        created.detail
    );
}

#[tokio::test]
async fn a_refusal_by_quota_writes_nothing_and_pushes_nothing() {
    let mut bed = TestBed::new().await;
    bed.site_with_quota("mit", 0, 1).await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let before = bed.all_events().await.len();

    let err = bed
        .core
        .create_slice(&alice, spec("demo", 2))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Exhausted(_)), "{err:?}");
    assert!(err.to_string().contains("quota of 1"), "{err}");
    assert!(bed.slice("demo").await.is_none());
    assert_eq!(bed.all_events().await.len(), before, "no event written");
    assert!(bed.sent("n1").is_empty());
    // The quota leaves room for one.
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    assert_eq!(bed.sent("n1").len(), 1);
}

#[tokio::test]
async fn a_refusal_by_capacity_says_why_and_writes_nothing() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 300, 1 << 30).await;
    let alice = bed.user("alice", "mit").await;

    let err = bed
        .core
        .create_slice(&alice, spec("demo", 2))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Exhausted(_)), "{err:?}");
    assert!(bed.slice("demo").await.is_none());
    assert!(bed.slice_events("demo").await.is_empty());
    assert!(bed.sent("n1").is_empty());
}
