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
    }
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
        reconcile(&d, &[], &[]),
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
        obs("c2", "b", "web", 1, ContainerPhase::Exited),
    ];
    assert_eq!(reconcile(&d, &o, &["web".into()]), vec![]);
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
        reconcile(&d, &o, &["web".into(), "gone".into()]),
        vec![
            Action::Remove {
                container_id: "c9".into(),
                sliver_id: "z".into(),
                deleted: true
            },
            Action::RemoveNetwork("gone".into()),
        ]
    );
}

#[test]
fn empty_desired_set_removes_everything() {
    let o = [obs("c1", "a", "web", 1, ContainerPhase::Exited)];
    let actions = reconcile(&BTreeMap::new(), &o, &["web".into()]);
    assert_eq!(actions.len(), 2);
}

#[test]
fn replaces_other_generation() {
    let d = desired(&[spec("a", "web", 2)]);
    let o = [obs("c1", "a", "web", 1, ContainerPhase::Running)];
    assert_eq!(
        reconcile(&d, &o, &["web".into()]),
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
        obs("c2", "a", "web", 2, ContainerPhase::Exited),
    ];
    assert_eq!(
        reconcile(&d, &o, &["web".into()]),
        vec![Action::Remove {
            container_id: "c1".into(),
            sliver_id: "a".into(),
            deleted: false
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
        reconcile(&d, &o, &["web".into()]),
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
    assert!(reconcile(&d, &o, &nets).is_empty());
    assert!(reconcile(&d, &o, &nets).is_empty());
}
