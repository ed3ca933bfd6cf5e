//! The fleet index: placement from memory stays exact, the database refuses what a stale index
//! offers, and a restart rebuilds the index from what is stored.

use super::*;
use crate::error::Error;

fn sized(name: &str, slivers: u32, cpu: i64) -> SliceSpec {
    let mut s = spec(name, slivers);
    s.resources = Resources::new(cpu, 64 << 20, 1 << 30);
    s
}

/// What the database's guard counters say a node holds.
async fn cpu_held(bed: &TestBed, node: &str) -> i64 {
    store::holding(&mut bed.core.db.conn().await.unwrap(), node)
        .await
        .unwrap()
        .expect("node row")
        .allocated
        .cpu_millis
}

#[tokio::test]
async fn the_database_refuses_what_a_stale_index_offers() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, sized("a", 1, 1000))
        .await
        .unwrap();
    // Another writer (a replica) takes the other half behind this service's back.
    let mut tx = bed.core.db.begin().await.unwrap();
    sqlx::query("UPDATE nodes SET cpu_used = cpu_used + 1000 WHERE name = 'n1'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let err = bed
        .core
        .create_slice(&alice, sized("b", 1, 1000))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Exhausted(_)), "{err:?}");
    assert!(err.to_string().contains("cpu"), "{err}");
    assert!(bed.slice("b").await.is_none(), "nothing written");
    assert_eq!(cpu_held(&bed, "n1").await, 2000, "never overcommitted");
}

#[tokio::test]
async fn deleted_slivers_give_their_capacity_and_ports_back() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 1000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let mut s = sized("a", 1, 1000);
    s.ports = vec![crate::model::NamedPort {
        name: "http".into(),
        container_port: 80,
    }];
    let (view, _) = bed.core.create_slice(&alice, s.clone()).await.unwrap();
    let first = view.slivers[0].sliver.ports[0].host_port;
    assert!(bed
        .core
        .create_slice(&alice, sized("b", 1, 1000))
        .await
        .is_err());

    bed.core.delete_slice(&alice, "a").await.unwrap();
    // Still held while the node has not confirmed the removal.
    assert_eq!(cpu_held(&bed, "n1").await, 1000);
    let id = view.slivers[0].sliver.id.clone();
    bed.report("n1", &id, SliverState::Deleted, "").await;
    assert_eq!(cpu_held(&bed, "n1").await, 0);

    s.name = "c".into();
    let (again, _) = bed.core.create_slice(&alice, s).await.unwrap();
    assert_eq!(
        again.slivers[0].sliver.ports[0].host_port, first,
        "the port is free again"
    );
    assert_eq!(cpu_held(&bed, "n1").await, 1000);
}

#[tokio::test]
async fn a_restarted_service_rebuilds_its_index_from_the_database() {
    let mut bed = TestBed::new().await;
    bed.site_with_quota("mit", 2, 0).await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, sized("a", 1, 1500))
        .await
        .unwrap();

    // A second core over the same database, as after a restart; the node reconnects.
    let db = Db::open(&bed.core.cfg.database_url).await.unwrap();
    let core = Core::with_clock(db, bed.core.cfg.clone(), bed.clock.clone());
    core.bootstrap().await.unwrap();
    let (tx, _rx) = mpsc::channel(16);
    core.hub.connect("n1", tx);
    core.node_connected("n1", hello("n1", 2000, 4 << 30), Vec::new(), None)
        .await
        .unwrap();

    let err = core
        .create_slice(&alice, sized("b", 1, 1000))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cpu"),
        "capacity remembered: {err}"
    );
    core.create_slice(&alice, sized("b", 1, 500)).await.unwrap();
    let err = core
        .create_slice(&alice, sized("c", 1, 0))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("2 of its 2 live slices"),
        "quota remembered: {err}"
    );
}

#[tokio::test]
async fn a_large_fleet_spreads_over_sites_and_least_loaded_nodes() {
    let mut bed = TestBed::new().await;
    for site in ["s1", "s2", "s3"] {
        bed.site(site).await;
    }
    // Past the size where placement looks at every node.
    for i in 0..300 {
        let site = ["s1", "s2", "s3"][i % 3];
        bed.node(&format!("n{i:03}"), site, 4000, 8 << 30).await;
    }
    let alice = bed.user("alice", "s1").await;
    let (view, _) = bed
        .core
        .create_slice(&alice, sized("wide", 30, 1000))
        .await
        .unwrap();
    let nodes: std::collections::BTreeSet<_> =
        view.slivers.iter().map(|v| v.sliver.node.clone()).collect();
    assert_eq!(nodes.len(), 30, "each sliver on its own empty node");
    for site in ["s1", "s2", "s3"] {
        let n = view
            .slivers
            .iter()
            .filter(|v| v.sliver.site == site)
            .count();
        assert_eq!(n, 10, "{site}");
    }
    // The next slice avoids the loaded nodes.
    let (next, _) = bed
        .core
        .create_slice(&alice, sized("next", 30, 1000))
        .await
        .unwrap();
    assert!(next.slivers.iter().all(|v| !nodes.contains(&v.sliver.node)));
    // Pack fills the fullest nodes first.
    let mut pack = sized("pack", 3, 1000);
    pack.placement.strategy = crate::model::PlacementStrategy::Pack;
    let (packed, _) = bed.core.create_slice(&alice, pack).await.unwrap();
    assert!(packed.slivers.iter().all(|v| nodes.contains(&v.sliver.node)
        || next.slivers.iter().any(|w| w.sliver.node == v.sliver.node)));
    // A request too big for any node is refused with the whole fleet's explanation.
    let err = bed
        .core
        .create_slice(&alice, sized("huge", 1, 5000))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("3 lack cpu"), "{err}");
}

#[tokio::test]
async fn a_deleted_slice_no_longer_counts_against_its_site_quota() {
    let mut bed = TestBed::new().await;
    bed.site_with_quota("mit", 1, 0).await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, sized("a", 1, 100))
        .await
        .unwrap();
    assert!(bed
        .core
        .create_slice(&alice, sized("b", 1, 100))
        .await
        .is_err());
    bed.core.delete_slice(&alice, "a").await.unwrap();
    bed.core
        .create_slice(&alice, sized("b", 1, 100))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_in_groups_never_overcommit_and_each_gets_its_own_answer() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    bed.node("n2", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    // 8 slivers of 1000m fit; 40 creates race for them, and two of each name.
    let creates = (0..40).map(|i| {
        let (core, alice) = (bed.core.clone(), alice.clone());
        tokio::spawn(async move {
            core.create_slice(&alice, sized(&format!("s{}", i / 2), 1, 1000))
                .await
        })
    });
    let mut placed = 0;
    let (mut full, mut taken) = (0, 0);
    for h in creates.collect::<Vec<_>>() {
        match h.await.unwrap() {
            Ok((view, _)) => {
                assert_eq!(view.slivers.len(), 1);
                placed += 1;
            }
            Err(Error::Exhausted(why)) => {
                assert!(why.contains("cpu"), "{why}");
                full += 1;
            }
            Err(Error::AlreadyExists { kind, .. }) => {
                assert_eq!(kind, "slice");
                taken += 1;
            }
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    assert_eq!(
        placed, 8,
        "every sliver that fits is placed ({full} full, {taken} taken)"
    );
    assert_eq!(placed + full + taken, 40);
    assert_eq!(
        cpu_held(&bed, "n1").await + cpu_held(&bed, "n2").await,
        8000
    );
    // Every placed slice is stored whole and its node was told.
    let mut told = bed.sent("n1").len() + bed.sent("n2").len();
    for i in 0..20 {
        if let Some(s) = bed.slice(&format!("s{i}")).await {
            assert_eq!(bed.slivers(&s.name).await.len(), 1);
            told -= 1;
        }
    }
    assert_eq!(told, 0, "one upsert per placed sliver");
}
