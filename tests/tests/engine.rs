//! A node's Docker engine restarted under its slivers: a private `dockerd` that this test owns
//! (its own socket, data root, address pool and network namespace; the shared engine is never
//! touched) is
//! stopped with SIGTERM, killed with SIGKILL and frozen with SIGSTOP, as `systemctl restart
//! docker`, a crash and a hang would. The node manager must report the outage, the service
//! must show it, and the slivers must come back as their restart policies say, with the same
//! containers.
//!
//! Needs root, `dockerd`, `ip`, `nsenter` and /bin/busybox. Elsewhere it is skipped with a notice, unless
//! `SLICEBED_REQUIRE_PRIVATE_ENGINE=1` (set by `.ci/run`) makes that a failure.

mod common;

use common::testbed::{slice, web_slice};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptions;
use common::*;
use slicebed_proto::v1 as pb;
use slicebed_tests::engine::{unavailable_reason, PrivateEngine};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

const NOT_BACK: &str = "ended while the container engine was unavailable";

fn private_engine_or_skip() -> bool {
    match unavailable_reason() {
        None => true,
        Some(why) if std::env::var_os("SLICEBED_REQUIRE_PRIVATE_ENGINE").is_some() => {
            panic!("SLICEBED_REQUIRE_PRIVATE_ENGINE is set but no private engine can run: {why}")
        }
        Some(why) => {
            eprintln!("NOTICE: engine restart test skipped: {why}");
            false
        }
    }
}

/// Sliver containers (id) per sliver id on the private engine, running or not.
async fn containers(engine: &PrivateEngine, node: &str) -> HashMap<String, Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("slicebed.node={node}")])]);
    let list = engine
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in list {
        let sliver = c
            .labels
            .unwrap_or_default()
            .remove("slicebed.sliver")
            .unwrap_or_default();
        out.entry(sliver)
            .or_default()
            .push(c.id.unwrap_or_default());
    }
    out
}

/// Waits until the node shows `state`; returns it.
async fn node_in(a: &Clients, name: &str, state: pb::NodeState, within: Duration) -> pb::Node {
    wait_for(&format!("node {name} {state:?}"), within, || async move {
        let n = node(a, name).await;
        (n.state == state as i32).then_some(n)
    })
    .await
}

/// The one sliver of `name` once it is in `state`.
async fn sliver_in(a: &Clients, name: &str, state: pb::SliverState) -> pb::Sliver {
    wait_for(
        &format!("slice {name} sliver {state:?}"),
        Duration::from_secs(60),
        || async move {
            let s = slice(a, name).await.expect("slice");
            let v = s.slivers.into_iter().next()?;
            (v.state == state as i32).then_some(v)
        },
    )
    .await
}

fn answers(engine: &PrivateEngine, v: &pb::Sliver) -> bool {
    let port = v.ports.first().map(|p| p.host_port).unwrap_or_default();
    engine
        .http_get(port)
        .is_some_and(|r| r.contains("hello from"))
}

#[tokio::test]
async fn an_engine_restart_is_reported_and_slivers_return_per_their_restart_policy() {
    if !private_engine_or_skip() {
        return;
    }
    let mut engine = PrivateEngine::start().await;
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let name = unique("eng");
    let nm = NodeManager::start_on(&svc, "mit", &name, &engine.host()).await;
    wait_ready(&a, 1).await;

    let policies = [
        ("never", pb::RestartPolicy::Never),
        ("onfail", pb::RestartPolicy::OnFailure),
        ("always", pb::RestartPolicy::Always),
    ];
    for (slice_name, policy) in policies {
        let mut req = web_slice(slice_name, 1);
        req.restart_policy = policy as i32;
        a.slices.clone().create_slice(req).await.unwrap();
    }
    for (slice_name, _) in policies {
        let v = sliver_in(&a, slice_name, pb::SliverState::Running).await;
        wait_for("sliver answers HTTP", Duration::from_secs(20), || async {
            answers(&engine, &v).then_some(())
        })
        .await;
    }
    let first = containers(&engine, &name).await;
    assert_eq!(first.len(), 3, "{first:?}");

    // `systemctl restart docker`, in two halves: SIGTERM (the engine stops every container
    // and exits)...
    let t = Instant::now();
    engine.stop().await;
    let stopped = t.elapsed();
    let down = node_in(
        &a,
        &name,
        pb::NodeState::EngineDown,
        Duration::from_secs(15),
    )
    .await;
    let shown_down = t.elapsed();
    let status = down.engine.expect("the node says why");
    assert!(
        status.unavailable && !status.message.is_empty(),
        "{status:?}"
    );
    for (slice_name, _) in policies {
        let s = slice(&a, slice_name).await.expect("slice");
        assert_eq!(
            s.slivers[0].state,
            pb::SliverState::Unknown as i32,
            "{slice_name}: a sliver on an engine that does not answer is unknown"
        );
        assert_eq!(s.state, pb::SliceState::Degraded as i32);
    }

    // ...and start again.
    let t = Instant::now();
    engine.start_again().await;
    node_in(&a, &name, pb::NodeState::Ready, Duration::from_secs(30)).await;
    let shown_ready = t.elapsed();
    for slice_name in ["onfail", "always"] {
        let v = sliver_in(&a, slice_name, pb::SliverState::Running).await;
        wait_for(
            &format!("{slice_name} answers HTTP after the restart"),
            Duration::from_secs(20),
            || async { answers(&engine, &v).then_some(()) },
        )
        .await;
    }
    let serving = t.elapsed();
    eprintln!(
        "figures: SIGTERM to engine exit {:.1}s; exit to node shown engine_down {:.2}s; \
         start to node ready {:.1}s, to on-failure and always slivers serving {:.1}s",
        stopped.as_secs_f64(),
        (shown_down - stopped).as_secs_f64(),
        shown_ready.as_secs_f64(),
        serving.as_secs_f64()
    );
    let never = sliver_in(&a, "never", pb::SliverState::Failed).await;
    assert!(
        never.last_error.starts_with(NOT_BACK),
        "the sliver that stayed down says why: {:?}",
        never.last_error
    );
    // Recovered, not re-created: the same container per sliver, none added.
    let after = containers(&engine, &name).await;
    assert_eq!(after, first, "one container per sliver, the same ones");
    let actions: Vec<String> = events(&a, &format!("node/{name}"))
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    let outage: Vec<&String> = actions.iter().filter(|x| x.starts_with("engine")).collect();
    assert_eq!(
        outage,
        ["engine unavailable", "engine available"],
        "{actions:?}"
    );

    // A crash: SIGKILL leaves no time to stop anything.
    engine.kill9().await;
    node_in(
        &a,
        &name,
        pb::NodeState::EngineDown,
        Duration::from_secs(15),
    )
    .await;
    let t = Instant::now();
    engine.start_again().await;
    let restarted = t.elapsed();
    node_in(&a, &name, pb::NodeState::Ready, Duration::from_secs(30)).await;
    let v = sliver_in(&a, "always", pb::SliverState::Running).await;
    wait_for(
        "always answers HTTP after the crash",
        Duration::from_secs(30),
        || async { answers(&engine, &v).then_some(()) },
    )
    .await;
    eprintln!(
        "figures: after SIGKILL, engine start took {:.1}s; start to always sliver serving {:.1}s",
        restarted.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let after_crash = containers(&engine, &name).await;
    assert_eq!(after_crash, first, "still one container per sliver");

    // A hang: SIGSTOP. The socket still accepts, nothing answers; the containers run on.
    let t = Instant::now();
    engine.freeze();
    node_in(
        &a,
        &name,
        pb::NodeState::EngineDown,
        Duration::from_secs(20),
    )
    .await;
    let hung_shown = t.elapsed();
    assert!(
        answers(&engine, &v),
        "a sliver keeps serving while its engine hangs"
    );
    engine.thaw();
    let t = Instant::now();
    node_in(&a, &name, pb::NodeState::Ready, Duration::from_secs(30)).await;
    eprintln!(
        "figures: hung engine shown engine_down after {:.1}s; ready {:.1}s after SIGCONT",
        hung_shown.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(containers(&engine, &name).await, first);
    assert!(
        !nm.log().contains("panicked"),
        "node manager log:\n{}",
        nm.log()
    );
}
