//! Owner reclaim and lease expiry against the real Docker engine: a reclaimed node freezes its
//! slivers (Docker pause) and thaws them on release without recreating them; a sliver whose
//! lease ended is removed even while paused. Skips (with a message) where no engine is reachable.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bollard::query_parameters::InspectContainerOptions;
use node_manager::domain::{
    ContainerPhase, ReportedState, Resources, RestartPolicy, SliverReport, SliverSpec,
};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::plan::Conditions;
use node_manager::reconciler::Reconciler;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;

const OWNER: &str = "owner reclaimed the node";

async fn engine(node: &str) -> Option<(DockerRuntime, bollard::Docker)> {
    let rt = DockerRuntime::connect(None, format!("{node}-{}", std::process::id()))
        .await
        .ok()?;
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return None;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return None;
    }
    // The engine itself, to observe it independently of the runtime under test.
    let docker = rt.docker().clone();
    cleanup(&rt).await;
    Some((rt, docker))
}

async fn cleanup(rt: &DockerRuntime) {
    for c in rt.list().await.unwrap() {
        rt.remove(&c.container_id).await.unwrap();
    }
    for n in rt.list_networks().await.unwrap() {
        rt.remove_network(&n).await.unwrap();
    }
}

fn spec(id: &str, lease_end: SystemTime) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: "reclaim".into(),
        index: 0,
        image: DEFAULT_TAG.into(),
        command: vec!["sh".into(), "-c".into(), "sleep 3600".into()],
        env: BTreeMap::new(),
        resources: Resources {
            cpu_millis: 250,
            memory_bytes: 32 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: RestartPolicy::Never,
        generation: 1,
        lease_expires_at: Some(lease_end),
        image_digest: String::new(),
        pull: None,
    }
}

fn find<'a>(reports: &'a [SliverReport], id: &str) -> Option<&'a SliverReport> {
    reports.iter().rev().find(|r| r.sliver_id == id)
}

async fn engine_paused(docker: &bollard::Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .state
        .and_then(|s| s.paused)
        .unwrap_or(false)
}

#[tokio::test]
async fn reclaim_pauses_and_release_unpauses_the_same_container() {
    let Some((rt, docker)) = engine("nm-reclaim").await else {
        return;
    };
    let now = SystemTime::now();
    let d: BTreeMap<_, _> = [("a".to_string(), spec("a", now + Duration::from_secs(3600)))].into();
    let mut rec = Reconciler::new(rt.clone());

    let reports = rec.pass_at(Some(&d), &Conditions::at(now)).await.unwrap();
    assert_eq!(find(&reports, "a").unwrap().state, ReportedState::Running);
    let id = rt.list().await.unwrap()[0].container_id.clone();

    let held = Conditions::at(now).held(OWNER);
    let reports = rec.pass_at(Some(&d), &held).await.unwrap();
    let r = find(&reports, "a").expect("a report when paused");
    assert_eq!(
        (r.state, r.message.as_str()),
        (ReportedState::Suspended, OWNER)
    );
    assert!(
        engine_paused(&docker, &id).await,
        "the engine shows it paused"
    );
    assert_eq!(rec.usage().running, 0);
    // Held again: nothing to do, nothing to say (pausing twice is fine).
    assert!(rec.pass_at(Some(&d), &held).await.unwrap().is_empty());
    rt.pause(&id)
        .await
        .expect("pausing a paused container is fine");

    let reports = rec.pass_at(Some(&d), &Conditions::at(now)).await.unwrap();
    assert_eq!(find(&reports, "a").unwrap().state, ReportedState::Running);
    assert!(!engine_paused(&docker, &id).await);
    let after = rt.list().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].container_id, id,
        "the same container, not a new one"
    );
    assert_eq!(after[0].phase, ContainerPhase::Running);
    rt.unpause(&id)
        .await
        .expect("unpausing a running container is fine");

    cleanup(&rt).await;
}

#[tokio::test]
async fn a_paused_sliver_whose_lease_ended_is_removed() {
    let Some((rt, _docker)) = engine("nm-lease").await else {
        return;
    };
    let now = SystemTime::now();
    let end = now + Duration::from_secs(60);
    let d: BTreeMap<_, _> = [("a".to_string(), spec("a", end))].into();
    let mut rec = Reconciler::new(rt.clone());
    let held = Conditions::at(now).held(OWNER);
    // Created while held: frozen at once.
    let reports = rec.pass_at(Some(&d), &held).await.unwrap();
    assert_eq!(find(&reports, "a").unwrap().state, ReportedState::Suspended);

    let reports = rec
        .pass_at(Some(&d), &Conditions::at(end).held(OWNER))
        .await
        .unwrap();
    let r = find(&reports, "a").unwrap();
    assert_eq!(
        (r.state, r.message.as_str()),
        (ReportedState::Deleted, "lease ended")
    );
    assert!(rt.list().await.unwrap().is_empty());
    cleanup(&rt).await;
}
