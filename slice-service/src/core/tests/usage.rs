//! Measured usage: only a sliver's own node speaks for it; who sees it; history kept in
//! buckets, written in batches and dropped with its slice.

use super::*;
use crate::usage::Usage;

fn cpu(m: i64) -> Usage {
    Usage {
        cpu_millis: m,
        memory_bytes: m << 20,
        ..Default::default()
    }
}

/// Slice `demo` of alice with two slivers, one on each of n1 and n2 (spread).
async fn two_nodes() -> (TestBed, Principal, Vec<Sliver>) {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    bed.node("n2", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 2))
        .await
        .unwrap();
    let vs = bed.slivers("demo").await;
    assert_ne!(vs[0].node, vs[1].node, "spread over both nodes");
    for v in &vs {
        bed.report(&v.node, &v.id, SliverState::Running, "").await;
    }
    (bed, alice, vs)
}

#[tokio::test]
async fn a_nodes_usage_report_about_another_nodes_sliver_is_not_recorded() {
    let (bed, alice, vs) = two_nodes().await;
    let (mine, theirs) = (&vs[0], &vs[1]);
    let liar = mine.node.clone();
    let report = vec![(mine.id.clone(), cpu(100)), (theirs.id.clone(), cpu(1900))];
    bed.core.record_usage(&liar, report.clone()).await.unwrap();
    bed.core.record_usage(&liar, report).await.unwrap();

    let u = bed.core.slice_usage(&alice, "demo", None).await.unwrap();
    let of = |id: &str| {
        u.sliver_usage
            .iter()
            .find(|s| s.view.sliver.id == id)
            .unwrap()
    };
    assert_eq!(of(&mine.id).current.map(|c| c.1), Some(cpu(100)));
    assert_eq!(
        of(&theirs.id).current,
        None,
        "another node's word is not kept"
    );
    assert_eq!((u.total, u.reporting, u.slivers), (cpu(100), 1, 2));
    let nodes = bed
        .core
        .nodes_usage(&alice, Some(&liar), None)
        .await
        .unwrap();
    assert_eq!(nodes[0].current.map(|c| (c.1, c.2)), Some((cpu(100), 1)));
    // Refused and written down once, naming the real node.
    let evs = bed.object_events(&format!("sliver/{}", theirs.id)).await;
    let refused: Vec<_> = evs.iter().filter(|e| e.action == "usage refused").collect();
    assert_eq!(refused.len(), 1, "{evs:?}");
    assert_eq!(refused[0].actor, format!("node/{liar}"));
    assert_eq!(
        refused[0].detail,
        format!("sliver belongs to node {}", theirs.node)
    );
}

#[tokio::test]
async fn usage_is_shown_to_those_who_may_see_the_slice_and_goes_stale() {
    let (bed, alice, vs) = two_nodes().await;
    for v in &vs {
        bed.core
            .record_usage(&v.node, vec![(v.id.clone(), cpu(500))])
            .await
            .unwrap();
    }
    let mallory = bed.user("mallory", "mit").await;
    let e = bed
        .core
        .slice_usage(&mallory, "demo", None)
        .await
        .unwrap_err();
    assert!(matches!(e, crate::error::Error::NotFound { .. }), "{e}");
    let (listed, _) = bed.core.slices_usage(&mallory, None, 100).await.unwrap();
    assert!(listed.is_empty());
    let (listed, next) = bed.core.slices_usage(&alice, None, 100).await.unwrap();
    assert_eq!((listed.len(), next.is_none()), (1, true));
    assert_eq!(listed[0].total, cpu(1000));
    assert_eq!(listed[0].limits, vs[0].resources.plus(vs[1].resources));
    // Node totals name no slice: anyone signed in sees them.
    let nodes = bed.core.nodes_usage(&mallory, None, None).await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes
        .iter()
        .all(|n| n.current.map(|c| c.1) == Some(cpu(500))));
    assert!(bed
        .core
        .nodes_usage(&mallory, Some("nope"), None)
        .await
        .is_err());
    // Three heartbeats without figures: nothing is current any more.
    bed.advance(bed.core.cfg.node_ttl + Duration::from_secs(1));
    let u = bed.core.slice_usage(&alice, "demo", None).await.unwrap();
    assert_eq!((u.reporting, u.total), (0, Usage::default()));
}

#[tokio::test]
async fn history_is_kept_in_buckets_and_dropped_with_its_slice() {
    let (bed, alice, vs) = two_nodes().await;
    let v = &vs[0];
    // An hour of a measurement a minute: 0, 1, 2, ... millicores.
    for i in 0..60 {
        bed.core
            .record_usage(&v.node, vec![(v.id.clone(), cpu(i))])
            .await
            .unwrap();
        bed.advance(Duration::from_secs(60));
    }
    let written = bed.core.flush_usage(bed.core.now_ms()).await.unwrap();
    assert!(written >= 2 * 11, "{written} buckets written in one batch");
    let hour = Some(Duration::from_secs(3600));
    let u = bed.core.slice_usage(&alice, "demo", hour).await.unwrap();
    let h = &u
        .sliver_usage
        .iter()
        .find(|s| s.view.sliver.id == v.id)
        .unwrap()
        .history;
    assert!((12..=13).contains(&h.len()), "{} buckets: {h:?}", h.len());
    assert!(h.windows(2).all(|w| w[0].at + 300_000 == w[1].at), "{h:?}");
    let full = h
        .iter()
        .find(|p| p.peak.cpu_millis - p.mean.cpu_millis == 2)
        .expect("a full bucket");
    assert_eq!(full.span_ms, 300_000);
    // Half an hour or less: every measurement.
    let recent = bed
        .core
        .slice_usage(&alice, "demo", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let r = &recent
        .sliver_usage
        .iter()
        .find(|s| s.view.sliver.id == v.id)
        .unwrap()
        .history;
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|p| p.span_ms == 0));

    // Deleted: its history goes at the next prune, from memory and the database.
    bed.core.delete_slice(&alice, "demo").await.unwrap();
    bed.core.prune_usage(bed.core.now_ms()).await.unwrap();
    let mut c = bed.core.db.conn().await.unwrap();
    let left = store::usage_buckets(
        &mut c,
        crate::usage::SeriesKind::Sliver,
        std::slice::from_ref(&v.id),
        0,
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(store::usage_slice_ids(&mut c).await.unwrap().is_empty());
    // The node's own history stays.
    let nodes = bed
        .core
        .nodes_usage(&alice, Some(&v.node), hour)
        .await
        .unwrap();
    assert!(nodes[0].history.len() >= 12);
}

#[tokio::test]
async fn a_node_naming_slivers_nobody_placed_gets_nothing_recorded_and_bounded_lookups() {
    let (bed, alice, vs) = two_nodes().await;
    let v = &vs[0];
    let mut junk: Vec<(String, Usage)> = (0..2000).map(|i| (format!("nope-{i}"), cpu(1))).collect();
    junk.push(("x".repeat(10_000), cpu(1)));
    junk.push((v.id.clone(), cpu(42)));
    // More unknown ids than one heartbeat looks up, and one far too long: each heartbeat reads
    // a bounded batch, the rest wait; the node's own sliver is still believed.
    bed.core.record_usage(&v.node, junk.clone()).await.unwrap();
    for _ in 0..10 {
        bed.core.record_usage(&v.node, junk.clone()).await.unwrap();
    }
    let u = bed.core.slice_usage(&alice, "demo", None).await.unwrap();
    let s = u
        .sliver_usage
        .iter()
        .find(|s| s.view.sliver.id == v.id)
        .unwrap();
    assert_eq!(
        s.current.map(|c| c.1),
        Some(cpu(42)),
        "learned within a few heartbeats"
    );
    let n = bed
        .core
        .nodes_usage(&alice, Some(&v.node), None)
        .await
        .unwrap();
    assert_eq!(n[0].current.map(|c| (c.1, c.2)), Some((cpu(42), 1)));
}
