use super::*;
use crate::domain::{ContainerPhase, Resources, RestartPolicy};
use crate::runtime::fake::{Behaviour, FakeRuntime};

const IMAGE: &str = "slicebed/base:latest";

fn spec(id: &str, slice: &str, image: &str, generation: u64) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: slice.into(),
        index: 0,
        image: image.into(),
        command: vec![],
        env: Default::default(),
        resources: Resources {
            cpu_millis: 250,
            memory_bytes: 256 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: RestartPolicy::Never,
        generation,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    }
}

fn desired(specs: &[SliverSpec]) -> BTreeMap<String, SliverSpec> {
    specs
        .iter()
        .map(|s| (s.sliver_id.clone(), s.clone()))
        .collect()
}

fn fake() -> FakeRuntime {
    FakeRuntime::new("n1")
        .with_image(IMAGE, Behaviour::Run)
        .with_image("crash:1", Behaviour::Exit(3))
        .with_image("done:1", Behaviour::Exit(0))
        .with_image("hog:1", Behaviour::OomKilled)
        .with_image(
            "broken:1",
            Behaviour::FailStart("port is already allocated".into()),
        )
}

fn states(reports: &[SliverReport]) -> Vec<(String, ReportedState)> {
    reports
        .iter()
        .map(|r| (r.sliver_id.clone(), r.state))
        .collect()
}

#[tokio::test]
async fn creates_reports_creating_then_running_and_counts_usage() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", IMAGE, 1), spec("b", "web", IMAGE, 1)]);
    let reports = rec.pass(Some(&d)).await.unwrap();
    assert_eq!(
        states(&reports),
        vec![
            ("a".into(), ReportedState::Creating),
            ("b".into(), ReportedState::Creating),
            ("a".into(), ReportedState::Running),
            ("b".into(), ReportedState::Running),
        ]
    );
    assert_eq!(rt.networks(), vec!["web".to_string()]);
    assert_eq!(rec.usage().running, 2);
    assert_eq!(rec.usage().resources.cpu_millis, 500);
    // Converged: a second pass does nothing and reports nothing.
    rt.clear_calls();
    assert!(rec.pass(Some(&d)).await.unwrap().is_empty());
    assert!(rt.calls().is_empty());
}

#[tokio::test]
async fn restart_of_the_agent_adopts_without_duplicates() {
    let rt = fake();
    let d = desired(&[spec("a", "web", IMAGE, 1)]);
    Reconciler::new(rt.clone()).pass(Some(&d)).await.unwrap();
    // kill -9 and start again: a fresh reconciler that remembers nothing.
    let mut again = Reconciler::new(rt.clone());
    let hello = again.snapshot().await.unwrap();
    assert_eq!(states(&hello), vec![("a".into(), ReportedState::Running)]);
    rt.clear_calls();
    assert!(again.pass(Some(&d)).await.unwrap().is_empty());
    assert!(
        rt.calls().is_empty(),
        "no create after restart: {:?}",
        rt.calls()
    );
    assert_eq!(rt.containers().len(), 1);
}

#[tokio::test]
async fn removes_orphans_of_slices_deleted_while_offline() {
    let rt = fake();
    let old = desired(&[spec("a", "web", IMAGE, 1), spec("z", "gone", IMAGE, 1)]);
    Reconciler::new(rt.clone()).pass(Some(&old)).await.unwrap();
    let mut rec = Reconciler::new(rt.clone());
    rec.snapshot().await.unwrap();
    let now = desired(&[spec("a", "web", IMAGE, 1)]);
    let reports = rec.pass(Some(&now)).await.unwrap();
    assert_eq!(states(&reports), vec![("z".into(), ReportedState::Deleted)]);
    assert_eq!(rt.containers().len(), 1);
    assert_eq!(rt.networks(), vec!["web".to_string()]);
}

#[tokio::test]
async fn replaces_on_new_generation() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    rec.pass(Some(&desired(&[spec("a", "web", IMAGE, 1)])))
        .await
        .unwrap();
    let before = rt.containers()[0].container_id.clone();
    rec.pass(Some(&desired(&[spec("a", "web", IMAGE, 2)])))
        .await
        .unwrap();
    let after = rt.containers();
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].container_id, before);
    assert_eq!(after[0].generation, 2);
}

#[tokio::test]
async fn exits_map_to_exited_failed_and_oom() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[
        spec("ok", "s", "done:1", 1),
        spec("bad", "s", "crash:1", 1),
        spec("hog", "s", "hog:1", 1),
    ]);
    let reports = rec.pass(Some(&d)).await.unwrap();
    let last = |id: &str| {
        reports
            .iter()
            .rev()
            .find(|r| r.sliver_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(last("ok").state, ReportedState::Exited);
    assert_eq!(
        (last("bad").state, last("bad").exit_code),
        (ReportedState::Failed, Some(3))
    );
    assert_eq!(last("bad").message, "exit code 3");
    assert_eq!(last("hog").message, "OOM-killed (memory limit 256Mi)");
    // Ended containers are adopted, not re-created (the restart policy is the engine's call).
    rt.clear_calls();
    assert!(rec.pass(Some(&d)).await.unwrap().is_empty());
    assert!(rt.calls().is_empty());
}

#[tokio::test]
async fn missing_image_fails_clearly_and_retries_with_backoff() {
    tokio::time::pause();
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", "foo:1", 1)]);
    let reports = rec.pass(Some(&d)).await.unwrap();
    let r = reports.last().unwrap();
    assert_eq!(r.state, ReportedState::Failed);
    assert_eq!(
        r.message,
        r#"image "foo:1" is not present on node n1 (no registry is reachable; build or import it)"#
    );
    rt.clear_calls();
    assert!(rec.pass(Some(&d)).await.unwrap().is_empty());
    assert!(rt.calls().is_empty(), "retried too early");
    tokio::time::advance(RETRY_BASE).await;
    rec.pass(Some(&d)).await.unwrap();
    assert_eq!(rt.calls(), vec!["create a".to_string()]);
}

#[tokio::test]
async fn start_failure_reports_failed_and_leaves_nothing() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let reports = rec
        .pass(Some(&desired(&[spec("a", "web", "broken:1", 1)])))
        .await
        .unwrap();
    let r = reports.last().unwrap();
    assert_eq!(r.state, ReportedState::Failed);
    assert!(r.message.contains("port is already allocated"));
    assert!(rt.containers().is_empty());
}

#[tokio::test]
async fn unknown_desired_set_only_observes() {
    let rt = fake();
    Reconciler::new(rt.clone())
        .pass(Some(&desired(&[spec("a", "web", IMAGE, 1)])))
        .await
        .unwrap();
    let mut rec = Reconciler::new(rt.clone());
    rt.clear_calls();
    let reports = rec.pass(None).await.unwrap();
    assert_eq!(states(&reports), vec![("a".into(), ReportedState::Running)]);
    assert!(rt.calls().is_empty());
}

#[tokio::test]
async fn reports_exit_observed_later_and_starts_created_leftovers() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", IMAGE, 1)]);
    rec.pass(Some(&d)).await.unwrap();
    let cid = rt.containers()[0].container_id.clone();
    rt.update(&cid, |c| {
        c.phase = ContainerPhase::EXITED;
        c.exit_code = Some(1);
    });
    let reports = rec.pass(Some(&d)).await.unwrap();
    assert_eq!(states(&reports), vec![("a".into(), ReportedState::Failed)]);
    rt.update(&cid, |c| c.phase = ContainerPhase::Created);
    rec.pass(Some(&d)).await.unwrap();
    assert_eq!(rt.containers()[0].phase, ContainerPhase::Running);
}

fn at(secs: u64) -> Conditions {
    Conditions::at(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

fn leased(id: &str, end_secs: u64) -> SliverSpec {
    let mut s = spec(id, "web", IMAGE, 1);
    s.lease_expires_at = Some(std::time::UNIX_EPOCH + Duration::from_secs(end_secs));
    s
}

fn messages(reports: &[SliverReport]) -> Vec<(String, ReportedState, String)> {
    reports
        .iter()
        .map(|r| (r.sliver_id.clone(), r.state, r.message.clone()))
        .collect()
}

#[tokio::test]
async fn ended_lease_removes_and_reports_deleted_with_the_reason() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let mut d = desired(&[leased("a", 100), leased("b", 200)]);
    rec.pass_at(Some(&d), &at(50)).await.unwrap();
    // A renewal of "a" (same generation, later end) before its end: kept as it is.
    d.insert("a".into(), leased("a", 300));
    rt.clear_calls();
    assert!(rec.pass_at(Some(&d), &at(150)).await.unwrap().is_empty());
    assert!(rt.calls().is_empty(), "{:?}", rt.calls());
    let reports = rec.pass_at(Some(&d), &at(200)).await.unwrap();
    assert_eq!(
        messages(&reports),
        vec![("b".into(), ReportedState::Deleted, "lease ended".into())]
    );
    assert_eq!(rt.containers().len(), 1);
    // Still in the desired set (the service never said remove), yet never created again.
    rt.clear_calls();
    assert!(rec.pass_at(Some(&d), &at(250)).await.unwrap().is_empty());
    assert!(rt.calls().is_empty(), "{:?}", rt.calls());
}

#[tokio::test]
async fn reclaim_pauses_creates_paused_and_release_resumes() {
    const OWNER: &str = "owner reclaimed the node";
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let mut d = desired(&[spec("a", "web", IMAGE, 1)]);
    rec.pass_at(Some(&d), &at(0)).await.unwrap();
    let held = at(1).held(OWNER);
    let reports = rec.pass_at(Some(&d), &held).await.unwrap();
    assert_eq!(
        messages(&reports),
        vec![("a".into(), ReportedState::Suspended, OWNER.into())]
    );
    assert_eq!(rec.usage().running, 0);
    // A new sliver while held: created, then frozen in the same pass.
    d.insert("b".into(), spec("b", "web", IMAGE, 1));
    let reports = rec.pass_at(Some(&d), &held).await.unwrap();
    assert_eq!(
        messages(&reports),
        vec![
            ("b".into(), ReportedState::Creating, String::new()),
            ("b".into(), ReportedState::Suspended, OWNER.into()),
        ]
    );
    assert!(rt
        .containers()
        .iter()
        .all(|c| c.phase == ContainerPhase::Paused));
    // Nothing more to say while it stays held.
    assert!(rec.pass_at(Some(&d), &held).await.unwrap().is_empty());
    let reports = rec.pass_at(Some(&d), &at(2)).await.unwrap();
    assert_eq!(
        states(&reports),
        vec![
            ("a".into(), ReportedState::Running),
            ("b".into(), ReportedState::Running)
        ]
    );
    assert_eq!(rec.usage().running, 2);
    // No container was replaced along the way.
    assert_eq!(
        rt.calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count(),
        2
    );
}

#[tokio::test]
async fn an_engine_outage_fails_no_sliver_and_names_what_it_ended() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let a = spec("a", "web", IMAGE, 1);
    let b = spec("b", "web", IMAGE, 1);
    rec.pass(Some(&desired(&[a.clone(), b.clone()])))
        .await
        .unwrap();

    // The engine goes away; meanwhile the service asks for "c".
    rt.set_down(true);
    let d = desired(&[a, b, spec("c", "web", IMAGE, 1)]);
    let err = rec.pass(Some(&d)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // Its restart stopped "a" for good (policy never); "b" came back by its policy.
    let a_id = rt
        .containers()
        .into_iter()
        .find(|c| c.sliver_id == "a")
        .unwrap()
        .container_id;
    rt.update(&a_id, |c| {
        c.phase = ContainerPhase::EXITED;
        c.exit_code = Some(137);
    });
    assert!(rec.pass(Some(&d)).await.is_err());

    rt.set_down(false);
    let reports = rec.pass(Some(&d)).await.unwrap();
    // "c" was never failed for the outage and is created at once, without a backoff.
    assert!(
        !reports
            .iter()
            .any(|r| r.sliver_id == "c" && r.state == ReportedState::Failed),
        "{reports:?}"
    );
    assert!(reports
        .iter()
        .any(|r| r.sliver_id == "c" && r.state == ReportedState::Running));
    let a_report = reports.iter().find(|r| r.sliver_id == "a").unwrap();
    assert_eq!(a_report.state, ReportedState::Failed);
    assert_eq!(
        a_report.message,
        "ended while the container engine was unavailable (exit code 137)"
    );
    assert!(!reports.iter().any(|r| r.sliver_id == "b"), "{reports:?}");
    // The explanation stays: later passes do not take it back.
    assert!(rec.pass(Some(&d)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_program_that_ends_while_the_engine_answers_is_not_blamed_on_it() {
    let rt = fake();
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", IMAGE, 1)]);
    rec.pass(Some(&d)).await.unwrap();
    let id = rt.containers()[0].container_id.clone();
    rt.update(&id, |c| {
        c.phase = ContainerPhase::EXITED;
        c.exit_code = Some(2);
    });
    let reports = rec.pass(Some(&d)).await.unwrap();
    assert_eq!(reports[0].message, "exit code 2");
}

#[tokio::test]
async fn a_backend_that_cannot_pause_says_so_instead_of_failing_each_pass() {
    const OWNER: &str = "owner reclaimed the node";
    let caps = Capabilities {
        pause: false,
        ..Capabilities::ALL
    };
    let rt = fake().with_capabilities(caps);
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", IMAGE, 1)]);
    rec.pass_at(Some(&d), &at(0)).await.unwrap();
    let held = at(1).held(OWNER);
    let reports = rec.pass_at(Some(&d), &held).await.unwrap();
    assert_eq!(
        messages(&reports),
        vec![(
            "a".into(),
            ReportedState::Running,
            format!("{OWNER}; {CANNOT_PAUSE}")
        )]
    );
    assert!(!rt.calls().iter().any(|c| c.starts_with("pause")));
    // Said once, not on every pass.
    assert!(rec.pass_at(Some(&d), &held).await.unwrap().is_empty());
    // Released: the reason goes away.
    let reports = rec.pass_at(Some(&d), &at(2)).await.unwrap();
    assert_eq!(
        messages(&reports),
        vec![("a".into(), ReportedState::Running, String::new())]
    );
}

#[tokio::test]
async fn a_backend_without_slice_networks_skips_network_steps() {
    let caps = Capabilities {
        slice_networks: false,
        ..Capabilities::ALL
    };
    let rt = fake().with_capabilities(caps);
    let mut rec = Reconciler::new(rt.clone());
    let d = desired(&[spec("a", "web", IMAGE, 1)]);
    let reports = rec.pass(Some(&d)).await.unwrap();
    assert_eq!(
        states(&reports),
        vec![
            ("a".into(), ReportedState::Creating),
            ("a".into(), ReportedState::Running)
        ]
    );
    rec.pass(Some(&BTreeMap::new())).await.unwrap();
    assert!(
        !rt.calls().iter().any(|c| c.starts_with("network")),
        "{:?}",
        rt.calls()
    );
}

#[tokio::test]
async fn a_sliver_over_its_disk_limit_is_stopped_and_says_why_even_after_a_restart() {
    let rt = fake();
    let mut s = spec("a", "web", IMAGE, 1);
    s.resources.disk_bytes = 16 << 20;
    let within = spec("b", "web", IMAGE, 1);
    let d = desired(&[s, within]);
    let mut rec = Reconciler::new(rt.clone()).with_disk_interval(Duration::ZERO);
    rec.pass(Some(&d)).await.unwrap();
    rt.set_written("a", 8 << 20);
    rt.set_written("b", 1 << 30);
    assert!(
        rec.pass(Some(&d)).await.unwrap().is_empty(),
        "within its limit (b has none)"
    );

    rt.set_written("a", 128 << 20);
    let reports = rec.pass(Some(&d)).await.unwrap();
    let r = reports
        .iter()
        .find(|r| r.sliver_id == "a")
        .expect("a reported");
    assert_eq!(r.state, ReportedState::Failed);
    assert_eq!(r.message, "disk limit 16Mi exceeded: 128Mi written");
    assert!(rt.calls().iter().any(|c| c.starts_with("stop ")));
    assert!(!reports.iter().any(|r| r.sliver_id == "b"));
    // Stopped, not restarted, and not re-reported.
    assert!(rec.pass(Some(&d)).await.unwrap().is_empty());

    // A restarted agent reads the same reason back from the engine's measure.
    let mut again = Reconciler::new(rt.clone());
    again.snapshot().await.unwrap();
    let reports = again.pass(Some(&d)).await.unwrap();
    let r = reports
        .iter()
        .find(|r| r.sliver_id == "a")
        .expect("a reported");
    assert_eq!(r.message, "disk limit 16Mi exceeded: 128Mi written");
}
