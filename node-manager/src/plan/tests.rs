use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::domain::{ContainerPhase, ObservedSliver, Resources, RestartPolicy, SliverSpec};

fn spec(id: &str, slice: &str, generation: u64) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: slice.into(),
        index: 0,
        image: "slicebed/base:latest".into(),
        command: vec![],
        env: Default::default(),
        resources: Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: RestartPolicy::OnFailure,
        generation,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    }
}

fn calm() -> Conditions {
    Conditions::at(UNIX_EPOCH + Duration::from_secs(1_000_000))
}

fn obs(cid: &str, id: &str, slice: &str, generation: u64, phase: ContainerPhase) -> ObservedSliver {
    ObservedSliver {
        container_id: cid.into(),
        sliver_id: id.into(),
        slice: slice.into(),
        generation,
        phase,
        exit_code: None,
        oom_killed: false,
        restarts: 0,
        limits: Resources::default(),
        error: None,
        ends_at: None,
    }
}

fn desired(specs: &[SliverSpec]) -> BTreeMap<String, SliverSpec> {
    specs
        .iter()
        .map(|s| (s.sliver_id.clone(), s.clone()))
        .collect()
}

#[test]
fn creates_missing_with_network_first() {
    let d = desired(&[spec("a", "web", 1)]);
    assert_eq!(
        reconcile(&d, &[], &[], &calm()),
        vec![
            Action::EnsureNetwork("web".into()),
            Action::Create(spec("a", "web", 1))
        ]
    );
}

#[test]
fn adopts_matching_containers_whatever_their_end() {
    let d = desired(&[spec("a", "web", 1), spec("b", "web", 1)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c2", "b", "web", 1, ContainerPhase::EXITED),
    ];
    assert_eq!(reconcile(&d, &o, &["web".into()], &calm()), vec![]);
}

#[test]
fn removes_undesired_and_their_network() {
    // A slice deleted while the node was offline: everything of it goes.
    let d = desired(&[spec("a", "web", 1)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c9", "z", "gone", 4, ContainerPhase::Running),
    ];
    assert_eq!(
        reconcile(&d, &o, &["web".into(), "gone".into()], &calm()),
        vec![
            Action::Remove {
                container_id: "c9".into(),
                sliver_id: "z".into(),
                deleted: true,
                message: String::new(),
            },
            Action::RemoveNetwork("gone".into()),
        ]
    );
}

#[test]
fn empty_desired_set_removes_everything() {
    let o = [obs("c1", "a", "web", 1, ContainerPhase::EXITED)];
    let actions = reconcile(&BTreeMap::new(), &o, &["web".into()], &calm());
    assert_eq!(actions.len(), 2);
}

#[test]
fn replaces_other_generation() {
    let d = desired(&[spec("a", "web", 2)]);
    let o = [obs("c1", "a", "web", 1, ContainerPhase::Running)];
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &calm()),
        vec![Action::Replace {
            container_id: "c1".into(),
            spec: spec("a", "web", 2)
        }]
    );
}

#[test]
fn keeps_one_of_duplicates_preferring_current_generation() {
    let d = desired(&[spec("a", "web", 2)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c2", "a", "web", 2, ContainerPhase::EXITED),
    ];
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &calm()),
        vec![Action::Remove {
            container_id: "c1".into(),
            sliver_id: "a".into(),
            deleted: false,
            message: String::new(),
        }]
    );
}

#[test]
fn starts_created_containers_and_skips_removing_ones() {
    let d = desired(&[spec("a", "web", 1), spec("b", "web", 1)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Created),
        obs("c2", "b", "web", 1, ContainerPhase::Removing),
    ];
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &calm()),
        vec![Action::Start {
            container_id: "c1".into(),
            sliver_id: "a".into()
        }]
    );
}

#[test]
fn is_idempotent_once_converged() {
    let d = desired(&[spec("a", "web", 1), spec("b", "db", 3)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c2", "b", "db", 3, ContainerPhase::Running),
    ];
    let nets = ["web".to_string(), "db".to_string()];
    assert!(reconcile(&d, &o, &nets, &calm()).is_empty());
    assert!(reconcile(&d, &o, &nets, &calm()).is_empty());
}

fn leased(id: &str, generation: u64, end_secs: u64) -> SliverSpec {
    let mut s = spec(id, "web", generation);
    s.lease_expires_at = Some(UNIX_EPOCH + Duration::from_secs(end_secs));
    s
}

#[test]
fn an_ended_lease_removes_the_sliver_with_a_reason() {
    let d = desired(&[leased("a", 1, 1_000_000), leased("b", 1, 1_000_001)]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c2", "b", "web", 1, ContainerPhase::Running),
    ];
    // The end itself counts as ended; "b" has a second left.
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &calm()),
        vec![Action::Remove {
            container_id: "c1".into(),
            sliver_id: "a".into(),
            deleted: true,
            message: LEASE_ENDED.into(),
        }]
    );
    // An ended sliver without a container is not created again.
    assert_eq!(reconcile(&d, &o[1..], &["web".into()], &calm()), vec![]);
    assert_eq!(
        next_lease_end(&d, calm().now),
        Some(UNIX_EPOCH + Duration::from_secs(1_000_001))
    );
    assert_eq!(
        next_lease_end(&d, UNIX_EPOCH + Duration::from_secs(2_000_000)),
        None
    );
}

#[test]
fn a_renewed_lease_keeps_the_container() {
    // Same generation, later end: nothing to do, in particular no replacement.
    let d = desired(&[leased("a", 1, 2_000_000)]);
    let o = [obs("c1", "a", "web", 1, ContainerPhase::Running)];
    assert_eq!(reconcile(&d, &o, &["web".into()], &calm()), vec![]);
}

#[test]
fn a_lease_renewed_past_the_backends_own_end_replaces_the_container() {
    // A Kubernetes Pod made for a lease ending at 1_500_000 cannot live past it.
    let mut pod = obs("c1", "a", "web", 1, ContainerPhase::Running);
    pod.ends_at = Some(UNIX_EPOCH + Duration::from_secs(1_500_000));
    let renewed = leased("a", 1, 2_000_000);
    assert_eq!(
        reconcile(
            &desired(std::slice::from_ref(&renewed)),
            &[pod.clone()],
            &["web".into()],
            &calm()
        ),
        vec![Action::Replace {
            container_id: "c1".into(),
            spec: renewed
        }]
    );
    // Next pass: the old one is going, its replacement still being created. The
    // replacement is the sliver; nothing is removed or created again.
    let mut going = pod.clone();
    going.phase = ContainerPhase::Removing;
    let mut new = obs("c2", "a", "web", 1, ContainerPhase::Created);
    new.ends_at = Some(UNIX_EPOCH + Duration::from_secs(2_000_000));
    let d = desired(&[leased("a", 1, 2_000_000)]);
    for o in [[going.clone(), new.clone()], [new.clone(), going.clone()]] {
        assert_eq!(
            reconcile(&d, &o, &["web".into()], &calm()),
            vec![Action::Start {
                container_id: "c2".into(),
                sliver_id: "a".into()
            }]
        );
    }
    // The same end, or a shorter lease (the agent ends it on time itself): kept.
    for end in [1_500_000, 1_200_000] {
        let d = desired(&[leased("a", 1, end)]);
        assert_eq!(
            reconcile(&d, &[pod.clone()], &["web".into()], &calm()),
            vec![]
        );
    }
}

#[test]
fn held_pauses_running_slivers_and_release_unpauses() {
    let d = desired(&[
        spec("a", "web", 1),
        spec("b", "web", 1),
        spec("c", "web", 1),
    ]);
    let o = [
        obs("c1", "a", "web", 1, ContainerPhase::Running),
        obs("c2", "b", "web", 1, ContainerPhase::EXITED),
        obs("c3", "c", "web", 1, ContainerPhase::Paused),
    ];
    let held = calm().held("owner reclaimed the node");
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &held),
        vec![Action::Pause {
            container_id: "c1".into(),
            sliver_id: "a".into()
        }]
    );
    assert_eq!(
        reconcile(&d, &o, &["web".into()], &calm()),
        vec![Action::Unpause {
            container_id: "c3".into(),
            sliver_id: "c".into()
        }]
    );
}

#[test]
fn held_still_creates_missing_and_removes_ended() {
    let d = desired(&[spec("a", "web", 1), leased("b", 1, 10)]);
    let o = [obs("c2", "b", "web", 1, ContainerPhase::Paused)];
    let actions = reconcile(&d, &o, &["web".into()], &calm().held("x"));
    assert_eq!(
        actions,
        vec![
            Action::Remove {
                container_id: "c2".into(),
                sliver_id: "b".into(),
                deleted: true,
                message: LEASE_ENDED.into(),
            },
            Action::Create(spec("a", "web", 1)),
        ]
    );
}
