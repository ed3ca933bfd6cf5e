//! Applying what nodes report: the state machine, events, and reports refused.

use super::*;

async fn one_sliver() -> (TestBed, String) {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    bed.node("n2", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    let v = bed.slivers("demo").await.remove(0);
    (bed, v.id)
}

#[tokio::test]
async fn reports_move_a_sliver_from_creating_to_running() {
    let (bed, id) = one_sliver().await;
    let node = bed.sliver(&id).await.node;

    bed.report(&node, &id, SliverState::Creating, "").await;
    assert_eq!(bed.sliver(&id).await.state, SliverState::Creating);
    bed.report(&node, &id, SliverState::Running, "").await;
    assert_eq!(bed.sliver(&id).await.state, SliverState::Running);
    // The same report again changes nothing and writes nothing.
    bed.report(&node, &id, SliverState::Running, "").await;

    let evs = bed.object_events(&format!("sliver/{id}")).await;
    assert_eq!(evs[0].action, "placed");
    assert_eq!(
        actions(&evs[1..]),
        [("state creating", ""), ("state running", "")]
    );
    assert!(evs[1..].iter().all(|e| e.actor == format!("node/{node}")));
}

#[tokio::test]
async fn a_failure_keeps_its_reason() {
    let (bed, id) = one_sliver().await;
    let node = bed.sliver(&id).await.node;

    bed.report(&node, &id, SliverState::Failed, "image not found")
        .await;

    let v = bed.sliver(&id).await;
    assert_eq!(v.state, SliverState::Failed);
    assert_eq!(v.last_error, "image not found");
    let evs = bed.object_events(&format!("sliver/{id}")).await;
    let last = evs.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail.as_str()),
        ("state failed", "image not found")
    );
}

#[tokio::test]
async fn a_report_about_another_nodes_sliver_is_refused_and_recorded() {
    let (bed, id) = one_sliver().await;
    let owner = bed.sliver(&id).await.node;
    let other = if owner == "n1" { "n2" } else { "n1" };

    bed.report(other, &id, SliverState::Failed, "forged").await;

    let v = bed.sliver(&id).await;
    assert_eq!((v.state, v.last_error.as_str()), (SliverState::Pending, ""));
    let evs = bed.object_events(&format!("sliver/{id}")).await;
    let refused = evs
        .iter()
        .find(|e| e.action == "report refused")
        .expect("event");
    assert_eq!(refused.actor, format!("node/{other}"));
    assert_eq!(refused.detail, format!("sliver belongs to node {owner}"));
}

#[tokio::test]
async fn a_live_sliver_is_not_deleted_on_a_nodes_word() {
    let (bed, id) = one_sliver().await;
    let node = bed.sliver(&id).await.node;
    bed.report(&node, &id, SliverState::Running, "").await;

    bed.report(&node, &id, SliverState::Deleted, "").await;

    assert_eq!(bed.sliver(&id).await.state, SliverState::Running);
}
