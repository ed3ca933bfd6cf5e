//! The chaos suite: real processes killed with SIGKILL at random moments, a partition made with
//! a TCP proxy the test controls, then checks that nothing was lost, duplicated or orphaned.
//!
//! Bounded in count and time. `.ci/run` runs the reduced suite; the full run is
//! `SLICEBED_CHAOS_FULL=1 cargo test -p slicebed-tests --test chaos -- --nocapture`.
//! Each test prints what it survived (kills, partitions, operations) as a `chaos:` line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::testbed::*;
use common::*;
use rand::{Rng, SeedableRng};
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::proxy::Proxy;
use slicebed_tests::{wait_for, Clients, Service, TestNode};

fn full() -> bool {
    std::env::var("SLICEBED_CHAOS_FULL").is_ok_and(|v| v == "1")
}

fn seed() -> u64 {
    std::env::var("SLICEBED_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

fn small(name: &str, slivers: u32) -> pb::CreateSliceRequest {
    let mut r = slice_req(name, slivers, 16 * MI);
    let res = r.resources.as_mut().unwrap();
    res.cpu_millis = 10;
    res.disk_bytes = 64 * MI;
    r.command = vec!["sleep".into(), "100000".into()];
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_service_during_creates_leaves_each_slice_whole_or_absent() {
    let rounds = if full() { 10 } else { 3 };
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut creds = Vec::new();
    for s in ["eth", "kaist", "mit"] {
        make_site(&a, s).await;
        let n = TestNode::join(&svc, s, &format!("n-{s}"), 64_000, 64 * GI).await;
        creds.push((n.name.clone(), n.credential.clone()));
        // Closed now and reconnected below each round: a second control stream for a node
        // whose first is open would be refused.
        n.disconnect();
    }
    let (mut attempted, mut acknowledged) = (0, 0);
    for round in 0..rounds {
        let a = Clients::admin(&svc).await;
        let mut nodes = Vec::new();
        for (name, cred) in &creds {
            nodes.push(
                TestNode::connect(&svc, name, cred, 64_000, 64 * GI)
                    .await
                    .unwrap(),
            );
        }
        wait_ready(&a, 3).await;
        // Creates run back to back from 8 clients until the service dies under them.
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for c in 0..8 {
            let mut s = a.slices.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let (mut tried, mut ok) = (0, 0);
                for i in 0.. {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tried += 1;
                    match s
                        .create_slice(small(&format!("r{round}-c{c}-{i}"), 3))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(_) => break,
                    }
                }
                (tried, ok)
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
        svc.kill();
        for t in tasks {
            let (tried, ok) = t.await.unwrap();
            attempted += tried;
            acknowledged += ok;
        }
        for n in nodes {
            n.disconnect();
        }
        svc.restart_in_place().await;
    }
    let a = Clients::admin(&svc).await;
    // Every page: an answer holds at most 100 slices.
    let mut slices = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = a
            .slices
            .clone()
            .list_slices(pb::ListSlicesRequest {
                include_deleted: true,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        slices.extend(r.slices);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    for s in &slices {
        assert_eq!(
            s.slivers.len(),
            3,
            "slice {} is half-allocated: {:?}",
            s.name,
            s.slivers
        );
    }
    assert!(
        slices.len() >= acknowledged,
        "every acknowledged create survived: {} < {acknowledged}",
        slices.len()
    );
    // Capacity held equals what the surviving slices hold: nothing orphaned.
    let held: i64 = nodes(&a)
        .await
        .iter()
        .map(|n| n.allocated.unwrap().memory_bytes)
        .sum();
    assert_eq!(held, slices.len() as i64 * 3 * 16 * MI);
    println!(
        "chaos: service SIGKILL x{rounds} during {attempted} create calls (seed {seed}): {} slices committed whole, {acknowledged} acknowledged before the kills, 0 half-allocated, 0 orphaned",
        slices.len()
    );
}

/// Slivers the service wants on each node, by id.
async fn wanted(a: &Clients) -> BTreeMap<String, BTreeSet<String>> {
    let slices = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in slices {
        for v in s.slivers {
            out.entry(v.node).or_default().insert(v.id);
        }
    }
    out
}

/// Sliver ids of a node's containers, with duplicates kept.
async fn present(node: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (id, _) in containers(node).await {
        let info = docker().inspect_container(&id, None).await;
        if let Ok(i) = info {
            if let Some(l) = i
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get("slicebed.sliver").cloned())
            {
                out.push(l);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_node_managers_in_a_storm_converges_to_exactly_the_desired_containers() {
    let ops = if full() { 200 } else { 60 };
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tb = testbed(&["eth", "kaist", "mit"]).await;
    let mut live: Vec<String> = Vec::new();
    let (mut creates, mut deletes, mut kills) = (0, 0, 0);
    let start = Instant::now();
    for i in 0..ops {
        // At most 6 live slices: each takes a bridge network per node, and Docker's default
        // address pools hold about 31.
        if live.len() >= 6 || (!live.is_empty() && rng.gen_bool(0.35)) {
            let name = live.remove(rng.gen_range(0..live.len()));
            tb.admin
                .slices
                .clone()
                .delete_slice(pb::DeleteSliceRequest { name })
                .await
                .unwrap();
            deletes += 1;
        } else {
            let name = format!("s{i}");
            if tb
                .admin
                .slices
                .clone()
                .create_slice(small(&name, rng.gen_range(1..=3)))
                .await
                .is_ok()
            {
                live.push(name);
                creates += 1;
            }
        }
        if rng.gen_bool(0.2) {
            let k = rng.gen_range(0..tb.nodes.len());
            tb.nodes[k].kill9();
            kills += 1;
            if rng.gen_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
            }
            tb.nodes[k].run();
        }
    }
    let storm = start.elapsed();
    // Convergence: every node's containers are exactly the slivers the service wants there.
    let a = tb.admin.clone();
    let names: Vec<String> = tb.nodes.iter().map(|n| n.name.clone()).collect();
    let took = Instant::now();
    wait_for(
        "containers equal desired slivers on every node",
        Duration::from_secs(180),
        || {
            let a = a.clone();
            let names = names.clone();
            async move {
                let want = wanted(&a).await;
                for n in &names {
                    let have = present(n).await;
                    let want: Vec<String> = want
                        .get(n)
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    if have != want {
                        return None;
                    }
                    // One network per slice with slivers here, none left over, none twice.
                    let mut nets = networks_of(n).await;
                    nets.sort();
                    let mut slices: Vec<String> = want
                        .iter()
                        .map(|id| format!("sb-{n}-{}", id.split('-').next().unwrap_or_default()))
                        .collect();
                    slices.sort();
                    slices.dedup();
                    if nets != slices {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let converged = took.elapsed();
    let want = wanted(&a).await;
    let total: usize = want.values().map(BTreeSet::len).sum();
    let slices = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices;
    assert_eq!(slices.len(), live.len(), "no slice lost");
    println!(
        "chaos: {ops} operations ({creates} creates, {deletes} deletes) in {:.1}s with {kills} node-manager SIGKILLs (seed {seed}); converged in {:.1}s to {total} containers (and one network per slice and node) for {} live slices: 0 orphans, 0 duplicates, 0 lost",
        storm.as_secs_f64(),
        converged.as_secs_f64(),
        slices.len()
    );
    let _ = &mut tb;
}

/// A service and one ready node manager at site "mit" that reaches it only through a proxy
/// the test can cut.
async fn node_behind_proxy(prefix: &str) -> (Service, Clients, Proxy, NodeManager) {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let proxy = Proxy::start(&svc.addr).await;
    let nm = NodeManager::start_via(
        &svc,
        "mit",
        &unique(prefix),
        Some(&format!("https://{}", proxy.addr)),
    )
    .await;
    wait_ready(&a, 1).await;
    (svc, a, proxy, nm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_keeps_its_slivers_enforces_leases_alone_and_rejoins() {
    let (_svc, a, proxy, nm) = node_behind_proxy("part").await;
    a.slices
        .clone()
        .create_slice(small("longlived", 1))
        .await
        .unwrap();
    let mut short = small("shortlease", 1);
    short.lease = Some(prost_types::Duration {
        seconds: 12,
        nanos: 0,
    });
    a.slices.clone().create_slice(short).await.unwrap();
    let lease_ends = Instant::now() + Duration::from_secs(12);
    wait_running(&a, "longlived").await;
    wait_running(&a, "shortlease").await;
    let before = present(&nm.name).await;
    assert_eq!(before.len(), 2);

    proxy.cut();
    let cut_at = Instant::now();
    // The lease must end during the cut for the node to be the one enforcing it; on a loaded
    // machine starting two containers can take most of it.
    assert!(
        lease_ends > cut_at + Duration::from_secs(3),
        "the slivers took too long to start to test the cut ({:?} of the lease left)",
        lease_ends.saturating_duration_since(cut_at)
    );
    wait_for("node unreachable", Duration::from_secs(10), || {
        let a = a.clone();
        async move { (nodes(&a).await[0].state == pb::NodeState::Unreachable as i32).then_some(()) }
    })
    .await;
    let s = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "longlived".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.slivers[0].state,
        pb::SliverState::Unknown as i32,
        "unknown, not failed"
    );
    // The short lease ends during the cut: the node removes that sliver on its own.
    let long_id = s.slivers[0].id.clone();
    let n = nm.name.clone();
    wait_for(
        "node enforces the lease alone",
        Duration::from_secs(20),
        || {
            let n = n.clone();
            let long_id = long_id.clone();
            async move { (present(&n).await == vec![long_id]).then_some(()) }
        },
    )
    .await;
    assert!(
        cut_at.elapsed() > Duration::from_secs(2),
        "the cut lasted past the node TTL"
    );

    proxy.heal();
    let healed = Instant::now();
    wait_for("node ready after the heal", Duration::from_secs(30), || {
        let a = a.clone();
        async move { (nodes(&a).await[0].state == pb::NodeState::Ready as i32).then_some(()) }
    })
    .await;
    let rejoin = healed.elapsed();
    let s = wait_running(&a, "longlived").await;
    assert_eq!(
        present(&nm.name).await,
        vec![s.slivers[0].id.clone()],
        "the long-lived sliver kept running through the cut"
    );
    println!(
        "chaos: partition of {:.1}s (past a 1.5s TTL): slivers kept running, a lease ending inside it enforced by the node alone, ready {:.1}s after the heal",
        healed.duration_since(cut_at).as_secs_f64(),
        rejoin.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renew_made_during_a_partition_wins_if_it_arrives_before_the_old_end() {
    let (_svc, a, proxy, nm) = node_behind_proxy("renew").await;
    let mut req = small("renewed", 1);
    req.lease = Some(prost_types::Duration {
        seconds: 8,
        nanos: 0,
    });
    a.slices.clone().create_slice(req).await.unwrap();
    let s = wait_running(&a, "renewed").await;
    let id = s.slivers[0].id.clone();
    let old_end = Instant::now() + Duration::from_secs(7);
    proxy.cut();
    // Renewed while the node cannot hear it.
    let r = a
        .slices
        .clone()
        .renew_slice(pb::RenewSliceRequest {
            name: "renewed".into(),
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap();
    assert!(r.into_inner().note.is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.heal();
    // Past the old end: the node learned the new end on reconnect and kept the sliver.
    tokio::time::sleep_until((old_end + Duration::from_secs(3)).into()).await;
    assert_eq!(
        present(&nm.name).await,
        vec![id],
        "the renewed sliver still runs after its old lease end"
    );
    let s = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "renewed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, pb::SliceState::Ready as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_manager_restarted_while_cut_off_still_ends_leases_on_time() {
    let (_svc, a, proxy, mut nm) = node_behind_proxy("kept").await;
    a.slices
        .clone()
        .create_slice(small("stays", 1))
        .await
        .unwrap();
    let mut short = small("ends", 1);
    short.lease = Some(prost_types::Duration {
        seconds: 10,
        nanos: 0,
    });
    a.slices.clone().create_slice(short).await.unwrap();
    let stays = wait_running(&a, "stays").await.slivers[0].id.clone();
    wait_running(&a, "ends").await;
    assert_eq!(present(&nm.name).await.len(), 2);

    // Cut off, then killed and restarted: the new process has heard nothing from the
    // service, only what the old one kept in its state dir.
    proxy.cut();
    nm.kill9();
    nm.run();
    let n = nm.name.clone();
    let expected = vec![stays.clone()];
    wait_for(
        "the restarted node manager ends the lease alone",
        Duration::from_secs(30),
        || {
            let n = n.clone();
            let expected = expected.clone();
            async move { (present(&n).await == expected).then_some(()) }
        },
    )
    .await;
    assert!(nm.log().contains("last desired set loaded"), "{}", nm.log());

    proxy.heal();
    wait_for("node ready after the heal", Duration::from_secs(30), || {
        let a = a.clone();
        async move { (nodes(&a).await[0].state == pb::NodeState::Ready as i32).then_some(()) }
    })
    .await;
    let s = wait_running(&a, "stays").await;
    assert_eq!(present(&nm.name).await, vec![s.slivers[0].id.clone()]);
    // The service's reaper marks it expired at its next sweep.
    wait_for("the ended slice expired", Duration::from_secs(15), || {
        let a = a.clone();
        async move {
            let s = slice(&a, "ends").await?;
            (s.state == pb::SliceState::Expired as i32).then_some(())
        }
    })
    .await;
}
