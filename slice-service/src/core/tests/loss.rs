//! Node loss and drain: `replace` slivers move, others stay or are removed at the deadline.

use super::*;
use crate::model::{AdminState, NodeLossPolicy};

const CPU: i64 = 2000;
const MEM: i64 = 4 << 30;

/// A node `n1` holding one sliver of `mover` (replace after 60 s) and one of `stayer` (keep),
/// then a second node `n2` with room for a replacement. Channels are read empty.
async fn two_slices_on_n1() -> (TestBed, String, String) {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", CPU, MEM).await;
    let alice = bed.user("alice", "mit").await;
    let mut mover = spec("mover", 1);
    mover.node_loss = NodeLossPolicy::Replace;
    mover.replace_after = Some(Duration::from_secs(60));
    bed.core.create_slice(&alice, mover).await.unwrap();
    bed.core
        .create_slice(&alice, spec("stayer", 1))
        .await
        .unwrap();
    bed.node("n2", "mit", CPU, MEM).await;
    let m = bed.slivers("mover").await.remove(0).id;
    let s = bed.slivers("stayer").await.remove(0).id;
    for id in [&m, &s] {
        bed.report("n1", id, SliverState::Running, "").await;
    }
    bed.sent("n1");
    (bed, m, s)
}

/// Time passes: `n2` keeps beating, `n1` is silent; then the sweeps run as the reaper does.
async fn n1_silent_for(bed: &TestBed, d: Duration) {
    bed.advance(d);
    bed.heartbeat("n2");
    bed.core.mark_unreachable().await.unwrap();
    bed.core.handle_lost_and_draining().await.unwrap();
}

#[tokio::test]
async fn a_lost_nodes_replace_sliver_moves_after_its_grace_and_only_then() {
    let (mut bed, old, stayer) = two_slices_on_n1().await;

    n1_silent_for(&bed, Duration::from_secs(40)).await;
    assert_eq!(bed.slivers("mover").await.len(), 1, "within its grace");
    assert!(bed.sent("n2").is_empty());
    let evs = bed.object_events("node/n1").await;
    assert!(evs.iter().any(|e| e.action == "unreachable"), "{evs:?}");

    n1_silent_for(&bed, Duration::from_secs(30)).await;
    let slivers = bed.slivers("mover").await;
    assert_eq!(slivers.len(), 2);
    let new = slivers.iter().find(|v| v.id != old).unwrap();
    assert_eq!((new.node.as_str(), new.state), ("n2", SliverState::Pending));
    assert_eq!(new.index, 0);
    assert_eq!(bed.sliver(&old).await.state, SliverState::Stopping);
    assert_eq!(bed.sent("n2"), [Sent::Upsert(new.id.clone())]);
    assert!(bed.sent("n1").is_empty(), "a lost node's channel is closed");
    let replaced = bed.object_events(&format!("sliver/{old}")).await;
    let last = replaced.last().unwrap();
    assert_eq!(last.action, "replaced");
    assert!(
        last.detail
            .contains("node n1 unreachable for more than 60s"),
        "{}",
        last.detail
    );
    // The keep slice waits for its node.
    assert_eq!(bed.sliver(&stayer).await.state, SliverState::Running);

    // Another sweep changes nothing: exactly one new copy.
    n1_silent_for(&bed, Duration::from_secs(30)).await;
    assert_eq!(bed.slivers("mover").await.len(), 2);

    // n1 returns: its desired set no longer holds the old copy, which is then settled.
    let desired = bed.connect("n1", CPU, MEM).await;
    assert_eq!(desired, [stayer]);
    assert_eq!(bed.sliver(&old).await.state, SliverState::Deleted);
}

#[tokio::test]
async fn a_replacement_with_nowhere_to_go_waits_and_says_so_once() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", CPU, MEM).await;
    let alice = bed.user("alice", "mit").await;
    let mut mover = spec("mover", 1);
    mover.node_loss = NodeLossPolicy::Replace;
    mover.replace_after = Some(Duration::from_secs(10));
    bed.core.create_slice(&alice, mover).await.unwrap();
    let old = bed.slivers("mover").await.remove(0).id;

    for _ in 0..2 {
        bed.advance(Duration::from_secs(60));
        bed.core.handle_lost_and_draining().await.unwrap();
    }

    assert_eq!(bed.slivers("mover").await.len(), 1);
    assert_eq!(bed.sliver(&old).await.state, SliverState::Pending);
    let evs = bed.object_events(&format!("sliver/{old}")).await;
    let pending: Vec<_> = evs
        .iter()
        .filter(|e| e.action == "replacement pending")
        .collect();
    assert_eq!(pending.len(), 1, "{evs:?}");
}

#[tokio::test]
async fn drain_moves_replace_slivers_at_once_and_removes_the_rest_at_the_deadline() {
    let (mut bed, old, stayer) = two_slices_on_n1().await;
    let admin = bed.admin.clone();
    bed.core
        .set_node_admin(
            &admin,
            "n1",
            AdminState::Draining,
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();

    bed.core.handle_lost_and_draining().await.unwrap();
    let new = bed
        .slivers("mover")
        .await
        .into_iter()
        .find(|v| v.id != old)
        .expect("replaced at once");
    assert_eq!(new.node, "n2");
    assert_eq!(bed.sent("n2"), [Sent::Upsert(new.id.clone())]);
    assert_eq!(
        bed.sent("n1"),
        [Sent::Remove(old.clone())],
        "a draining node removes its copy"
    );
    assert_eq!(bed.sliver(&old).await.state, SliverState::Stopping);
    assert_eq!(bed.sliver(&stayer).await.state, SliverState::Running);

    bed.advance(Duration::from_secs(601));
    bed.heartbeat("n1");
    bed.heartbeat("n2");
    bed.core.handle_lost_and_draining().await.unwrap();

    let v = bed.sliver(&stayer).await;
    assert_eq!(v.state, SliverState::Stopping);
    assert_eq!(v.last_error, "removed: node n1 drain deadline passed");
    assert_eq!(bed.sent("n1"), [Sent::Remove(stayer.clone())]);
    assert!(bed.sent("n2").is_empty());
    let evs = bed.object_events("node/n1").await;
    let last = evs.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail.as_str()),
        ("drain deadline", "1 sliver(s) removed")
    );
}

#[tokio::test]
async fn a_node_without_its_engine_loses_its_replace_slivers_after_their_grace() {
    let (mut bed, old, stayer) = two_slices_on_n1().await;
    bed.core
        .engine_reported("n1", Some(("connection refused".into(), bed.core.now_ms())))
        .await
        .unwrap();
    let evs = bed.object_events("node/n1").await;
    assert_eq!(evs.last().unwrap().action, "engine unavailable");

    // The node keeps beating: only its engine is away.
    for _ in 0..2 {
        bed.advance(Duration::from_secs(40));
        bed.heartbeat("n1");
        bed.heartbeat("n2");
        bed.core.handle_lost_and_draining().await.unwrap();
    }

    let new = bed
        .slivers("mover")
        .await
        .into_iter()
        .find(|v| v.id != old)
        .expect("replaced after 80s");
    assert_eq!(new.node, "n2");
    assert_eq!(bed.sent("n2"), [Sent::Upsert(new.id.clone())]);
    assert_eq!(
        bed.sent("n1"),
        [Sent::Remove(old.clone())],
        "still connected"
    );
    let last = bed
        .object_events(&format!("sliver/{old}"))
        .await
        .pop()
        .unwrap();
    assert!(
        last.detail
            .contains("without a container engine for more than 60s"),
        "{}",
        last.detail
    );
    assert_eq!(bed.sliver(&stayer).await.state, SliverState::Running);
}
