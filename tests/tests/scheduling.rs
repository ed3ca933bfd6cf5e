//! Placement through the real service: spread, all-or-nothing, best effort, and a storm of
//! parallel creates on scarce capacity that must never overcommit.

mod common;

use std::collections::BTreeSet;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_tests::{Clients, Service, TestNode};
use tonic::Code;

async fn three_sites(svc: &Service) -> (Clients, Vec<TestNode>) {
    let a = Clients::admin(svc).await;
    let mut nodes = Vec::new();
    for (i, s) in ["eth", "kaist", "mit"].iter().enumerate() {
        make_site(&a, s).await;
        // Two nodes per site: 1 GiB each.
        for j in 0..2 {
            nodes.push(TestNode::join(svc, s, &format!("{s}-{i}{j}"), 2000, GI).await);
        }
    }
    wait_ready(&a, 6).await;
    (a, nodes)
}

#[tokio::test]
async fn spread_takes_distinct_sites_first() {
    let svc = Service::start().await;
    let (a, _nodes) = three_sites(&svc).await;
    let sl = a
        .slices
        .clone()
        .create_slice(slice_req("spread3", 3, 256 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let sites: BTreeSet<&str> = sl.slivers.iter().map(|v| v.site.as_str()).collect();
    assert_eq!(
        sites.len(),
        3,
        "one sliver on each of 3 sites: {:?}",
        sl.slivers
    );

    let mut per = slice_req("persite", 0, 256 * MI);
    per.placement = Some(pb::PlacementRequest {
        per_site: 2,
        sites: vec!["mit".into(), "eth".into()],
        ..Default::default()
    });
    let sl = a
        .slices
        .clone()
        .create_slice(per)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    assert_eq!(sl.slivers.len(), 4);
    assert_eq!(sl.slivers.iter().filter(|v| v.site == "mit").count(), 2);
    assert_eq!(sl.slivers.iter().filter(|v| v.site == "eth").count(), 2);
    // Within a site, spread uses both nodes.
    let mit_nodes: BTreeSet<&str> = sl
        .slivers
        .iter()
        .filter(|v| v.site == "mit")
        .map(|v| v.node.as_str())
        .collect();
    assert_eq!(mit_nodes.len(), 2);
}

#[tokio::test]
async fn all_or_nothing_leaves_nothing_behind_and_best_effort_takes_what_fits() {
    let svc = Service::start().await;
    let (a, _nodes) = three_sites(&svc).await;
    // 6 nodes x 1 GiB; 600 MiB slivers fit one per node: 6 at most.
    let e = a
        .slices
        .clone()
        .create_slice(slice_req("toomany", 7, 600 * MI))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("only 6 fit"), "{}", e.message());
    let all = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest {
            include_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        all.into_inner().slices.is_empty(),
        "a refused slice leaves no record"
    );
    assert!(
        nodes(&a).await.iter().all(|n| n.slivers == 0),
        "and no sliver holds capacity"
    );

    let mut be = slice_req("besteffort", 7, 600 * MI);
    be.placement.as_mut().unwrap().best_effort = true;
    let r = a
        .slices
        .clone()
        .create_slice(be)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.slice.unwrap().slivers.len(), 6);
    assert!(
        r.warnings.iter().any(|w| w.contains("6 of 7")),
        "{:?}",
        r.warnings
    );

    // Everything is full now: the reason names memory.
    let e = a
        .slices
        .clone()
        .create_slice(slice_req("more", 1, 600 * MI))
        .await
        .unwrap_err();
    assert!(e.message().contains("memory"), "{}", e.message());
}

#[tokio::test]
async fn unreachable_nodes_are_not_used_and_the_reason_says_so() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "ucl").await;
    let _m = TestNode::join(&svc, "mit", "m1", 1000, GI).await;
    let u = TestNode::join(&svc, "ucl", "u1", 1000, GI).await;
    wait_ready(&a, 2).await;
    u.disconnect();
    slicebed_tests::wait_for("u1 unreachable", std::time::Duration::from_secs(10), || {
        let a = a.clone();
        async move {
            nodes(&a)
                .await
                .iter()
                .any(|n| n.name == "u1" && n.state == pb::NodeState::Unreachable as i32)
                .then_some(())
        }
    })
    .await;
    let e = a
        .slices
        .clone()
        .create_slice(slice_req("two", 2, 600 * MI))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("unreachable") && e.message().contains("ucl"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn storm_of_parallel_creates_never_overcommits() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    // 2 nodes x 1 GiB, 256 MiB slivers: room for exactly 8.
    let _n1 = TestNode::join(&svc, "mit", "n1", 4000, GI).await;
    let _n2 = TestNode::join(&svc, "eth", "n2", 4000, GI).await;
    wait_ready(&a, 2).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut s = a.slices.clone();
        tasks.push(tokio::spawn(async move {
            s.create_slice(slice_req(&format!("storm{i}"), 1, 256 * MI))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message()),
        }
    }
    assert_eq!(ok, 8, "exactly the capacity is committed");
    for n in nodes(&a).await {
        let (alloc, cap) = (n.allocated.unwrap(), n.capacity.unwrap());
        assert!(
            alloc.memory_bytes <= cap.memory_bytes,
            "{} overcommitted: {alloc:?} > {cap:?}",
            n.name
        );
    }
    let live = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices;
    assert_eq!(live.len(), 8);
}

#[tokio::test]
async fn site_quotas_are_enforced() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut s = site("mit");
    s.site.as_mut().unwrap().quota = Some(pb::Quota {
        max_slices: 1,
        max_slivers: 3,
    });
    a.admin.clone().create_site(s).await.unwrap();
    let _n = TestNode::join(&svc, "mit", "n1", 4000, 4 * GI).await;
    wait_ready(&a, 1).await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let e = alice
        .slices
        .clone()
        .create_slice(slice_req("big", 4, 64 * MI))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("quota"), "{}", e.message());
    alice
        .slices
        .clone()
        .create_slice(slice_req("one", 2, 64 * MI))
        .await
        .unwrap();
    let e = alice
        .slices
        .clone()
        .create_slice(slice_req("two", 1, 64 * MI))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("1 of its 1 live slices"),
        "{}",
        e.message()
    );
}
