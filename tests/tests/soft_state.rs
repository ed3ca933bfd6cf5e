//! Soft state and failures over the real service: watch streams, lease warnings, the node-loss
//! policies (keep and replace, exactly one copy surviving), drain with a deadline, and a node
//! whose container engine stops answering.

mod common;

use std::time::Duration;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::service_message::Msg;
use slicebed_tests::{wait_for, Clients, Service, TestNode};

fn dur(secs: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: secs,
        nanos: 0,
    })
}

async fn get(a: &Clients, name: &str) -> pb::Slice {
    a.slices
        .clone()
        .get_slice(pb::GetSliceRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

fn live(s: &pb::Slice) -> Vec<&pb::Sliver> {
    let dead = [
        pb::SliverState::Stopping as i32,
        pb::SliverState::Deleted as i32,
    ];
    s.slivers
        .iter()
        .filter(|v| !dead.contains(&v.state))
        .collect()
}

async fn desired_set(node: &mut TestNode) -> Vec<String> {
    loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("a message")
            .msg
        {
            Some(Msg::Desired(d)) => return d.slivers.into_iter().map(|s| s.sliver_id).collect(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn watch_streams_events_as_they_happen_and_leases_near_their_end_are_flagged() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let _n = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let mut req = slice_req("w", 1, 64 * MI);
    req.lease = dur(2 * 3600);
    a.slices.clone().create_slice(req).await.unwrap();
    // Replay from the start, then live: the warning is written by a sweep, maybe later.
    let mut watch = a
        .slices
        .clone()
        .watch_events(pb::WatchEventsRequest {
            object: "slice/w".into(),
            after_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut actions = Vec::new();
    while !actions.iter().any(|x: &String| x == "lease ends soon") {
        let e = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("events arrive while watching")
            .unwrap()
            .expect("stream open");
        actions.push(e.action);
    }
    assert!(
        actions.contains(&"placed".to_string()) && actions.contains(&"created".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn replace_policy_re_places_after_the_grace_and_one_copy_survives_the_return() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut nodes = vec![
        TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await,
        TestNode::join(&svc, "mit", "n2", 2000, 2 * GI).await,
    ];
    wait_ready(&a, 2).await;
    let mut req = slice_req("mobile", 1, 64 * MI);
    req.placement.as_mut().unwrap().sites = vec!["mit".into()];
    req.node_loss = pb::NodeLossPolicy::Replace as i32;
    req.replace_after = dur(1);
    let first = a
        .slices
        .clone()
        .create_slice(req)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let old = first.slivers[0].clone();
    // Take the node that holds it away.
    let i = nodes.iter().position(|n| n.name == old.node).unwrap();
    let holder = nodes.remove(i);
    let other = nodes[0].name.clone();
    let cred = holder.credential.clone();
    holder.disconnect();
    let replaced = wait_for(
        "sliver re-placed on the other node",
        Duration::from_secs(15),
        || {
            let a = a.clone();
            let other = other.clone();
            async move {
                let s = get(&a, "mobile").await;
                let l = live(&s);
                (l.len() == 1 && l[0].node == other).then(|| l[0].clone())
            }
        },
    )
    .await;
    assert_eq!(replaced.index, old.index);
    assert_ne!(replaced.id, old.id);
    let s = get(&a, "mobile").await;
    let old_now = s.slivers.iter().find(|v| v.id == old.id).unwrap();
    assert_eq!(
        old_now.state,
        pb::SliverState::Stopping as i32,
        "the lost copy is retired"
    );
    // The lost node returns: its desired set no longer holds the old sliver.
    let mut back = TestNode::connect(&svc, &old.node, &cred, 2000, 2 * GI)
        .await
        .unwrap();
    assert!(
        desired_set(&mut back).await.is_empty(),
        "exactly one copy survives"
    );
}

#[tokio::test]
async fn keep_policy_waits_and_shows_unknown() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let n1 = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    let _n2 = TestNode::join(&svc, "eth", "n2", 2000, 2 * GI).await;
    wait_ready(&a, 2).await;
    let mut req = slice_req("stay", 1, 64 * MI);
    req.placement.as_mut().unwrap().sites = vec!["mit".into()];
    a.slices.clone().create_slice(req).await.unwrap();
    n1.disconnect();
    let s = wait_for("sliver unknown", Duration::from_secs(10), || {
        let a = a.clone();
        async move {
            let s = get(&a, "stay").await;
            (s.slivers[0].state == pb::SliverState::Unknown as i32).then_some(s)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2 = get(&a, "stay").await;
    assert_eq!(s2.slivers.len(), s.slivers.len(), "keep never re-places");
    assert_eq!(s2.state, pb::SliceState::Degraded as i32);
}

#[tokio::test]
async fn drain_moves_replaceable_slivers_first_and_removes_the_rest_at_the_deadline() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let mut n1 = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    let _n2 = TestNode::join(&svc, "eth", "n2", 2000, 2 * GI).await;
    wait_ready(&a, 2).await;
    let mut movable = slice_req("movable", 1, 64 * MI);
    movable.placement.as_mut().unwrap().sites = vec!["mit".into()];
    movable.node_loss = pb::NodeLossPolicy::Replace as i32;
    a.slices.clone().create_slice(movable).await.unwrap();
    let mut fixed = slice_req("fixed", 1, 64 * MI);
    fixed.placement.as_mut().unwrap().sites = vec!["mit".into()];
    let f = a
        .slices
        .clone()
        .create_slice(fixed)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    // Re-placing "movable" must leave mit: allow any site for its copy.
    let node = a
        .admin
        .clone()
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            deadline: dur(3),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.state, pb::NodeState::Draining as i32);
    assert!(node.drain_deadline.is_some());
    // "movable" is restricted to mit, whose only node drains: the replacement waits and says why.
    let ev = wait_for(
        "replacement pending explained",
        Duration::from_secs(10),
        || {
            let a = a.clone();
            async move {
                events(&a, "slice/movable")
                    .await
                    .into_iter()
                    .find(|e| e.action == "replacement pending")
            }
        },
    )
    .await;
    assert!(ev.detail.contains("draining"), "{}", ev.detail);
    // At the deadline the remaining slivers are removed and n1 is told.
    let removed = n1.next_remove(Duration::from_secs(10)).await;
    assert!(
        removed == f.slivers[0].id || removed.starts_with("movable-"),
        "{removed}"
    );
    wait_for("no live sliver left on n1", Duration::from_secs(10), || {
        let a = a.clone();
        async move {
            let n = a
                .admin
                .clone()
                .get_node(pb::GetNodeRequest { name: "n1".into() })
                .await
                .ok()?
                .into_inner();
            let fs = get(&a, "fixed").await;
            (live(&fs).is_empty() && n.state == pb::NodeState::Draining as i32).then_some(())
        }
    })
    .await;
    let n = a
        .admin
        .clone()
        .enable_node(pb::EnableNodeRequest { name: "n1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.state, pb::NodeState::Ready as i32);
    assert!(n.drain_deadline.is_none());
}

#[tokio::test]
async fn drain_re_places_replaceable_slivers_on_other_nodes_at_once() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let _n1 = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let mut req = slice_req("hop", 1, 64 * MI);
    req.node_loss = pb::NodeLossPolicy::Replace as i32;
    a.slices.clone().create_slice(req).await.unwrap();
    let _n2 = TestNode::join(&svc, "mit", "n2", 2000, 2 * GI).await;
    wait_ready(&a, 2).await;
    a.admin
        .clone()
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            deadline: None,
        })
        .await
        .unwrap();
    wait_for("re-placed on n2", Duration::from_secs(10), || {
        let a = a.clone();
        async move {
            let s = get(&a, "hop").await;
            let l = live(&s);
            (l.len() == 1 && l[0].node == "n2").then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn an_engine_outage_shows_unknown_takes_no_slivers_and_moves_replaceable_ones() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let mut n1 = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    // Both slices land on n1, the only node so far.
    let keep = slice_req("keep", 1, 64 * MI);
    a.slices.clone().create_slice(keep).await.unwrap();
    let mut req = slice_req("move", 1, 64 * MI);
    req.node_loss = pb::NodeLossPolicy::Replace as i32;
    req.replace_after = dur(1);
    let moving = a
        .slices
        .clone()
        .create_slice(req)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap()
        .slivers[0]
        .clone();
    let kept = get(&a, "keep").await.slivers[0].id.clone();
    n1.report(&kept, pb::SliverState::Running, "").await;
    let _n2 = TestNode::join(&svc, "eth", "n2", 2000, 2 * GI).await;
    wait_ready(&a, 2).await;

    n1.set_engine(Some("list containers: connection refused"))
        .await;
    let shown = wait_for("node shown engine_down", Duration::from_secs(10), || {
        let a = a.clone();
        async move {
            let n = node(&a, "n1").await;
            (n.state == pb::NodeState::EngineDown as i32).then_some(n)
        }
    })
    .await;
    let engine = shown.engine.expect("engine status on the node");
    assert!(engine.unavailable);
    assert_eq!(engine.message, "list containers: connection refused");
    assert!(engine.since.is_some());
    assert_eq!(
        get(&a, "keep").await.slivers[0].state,
        pb::SliverState::Unknown as i32,
        "a sliver on a node that cannot see its containers is unknown, not failed"
    );
    // No new sliver goes to a node without an engine, and the refusal says why.
    let mut pinned = slice_req("pinned", 1, 64 * MI);
    pinned.placement.as_mut().unwrap().sites = vec!["mit".into()];
    let err = a.slices.clone().create_slice(pinned).await.unwrap_err();
    assert!(
        err.message().contains("container engine down"),
        "{}",
        err.message()
    );
    // The replaceable sliver moves to n2 after its grace; the kept one waits.
    let replaced = wait_for("sliver re-placed on n2", Duration::from_secs(15), || {
        let a = a.clone();
        async move {
            let s = get(&a, "move").await;
            let l = live(&s);
            (l.len() == 1 && l[0].node == "n2").then(|| l[0].clone())
        }
    })
    .await;
    assert_ne!(replaced.id, moving.id);
    let ev = events(&a, "slice/move").await;
    assert!(
        ev.iter().any(|e| e.action == "replaced"
            && e.detail
                .contains("node n1 without a container engine for more than 1s")),
        "{ev:?}"
    );
    // n1 is told to remove its copy now: it still speaks, only its engine is away.
    let removed = n1.next_remove(Duration::from_secs(5)).await;
    assert_eq!(removed, moving.id);

    n1.set_engine(None).await;
    wait_for("node ready again", Duration::from_secs(10), || {
        let a = a.clone();
        async move { (node(&a, "n1").await.state == pb::NodeState::Ready as i32).then_some(()) }
    })
    .await;
    assert!(node(&a, "n1").await.engine.is_none());
    assert_eq!(
        get(&a, "keep").await.slivers[0].state,
        pb::SliverState::Running as i32
    );
    let ev = events(&a, "node/n1").await;
    let outage: Vec<&str> = ev
        .iter()
        .map(|e| e.action.as_str())
        .filter(|x| x.starts_with("engine"))
        .collect();
    assert_eq!(outage, ["engine unavailable", "engine available"], "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.detail.starts_with("list containers: connection refused")),
        "{ev:?}"
    );
}
