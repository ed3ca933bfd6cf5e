//! Reading a sliver back from an inspected container: its labels say which sliver, slice,
//! generation and disk limit; its state gives the backend-neutral [`ContainerPhase`]. Docker's
//! own phases (restarting, removing, dead, stopping) are mapped here and nowhere else.

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};

use crate::domain::{ContainerPhase, ObservedSliver, Resources};
use crate::runtime::labels;

/// Docker's container status in the node manager's terms.
pub fn phase(status: Option<ContainerStateStatusEnum>) -> ContainerPhase {
    use ContainerStateStatusEnum as S;
    match status {
        Some(S::CREATED) | Some(S::EMPTY) | None => ContainerPhase::Created,
        // Being stopped: its processes are still there until the stop completes.
        Some(S::RUNNING) | Some(S::STOPPING) => ContainerPhase::Running,
        Some(S::PAUSED) => ContainerPhase::Paused,
        Some(S::RESTARTING) => ContainerPhase::RESTARTING,
        Some(S::EXITED) => ContainerPhase::EXITED,
        Some(S::REMOVING) => ContainerPhase::Removing,
        // Docker could not remove (or clean up) it: it never runs again.
        Some(S::DEAD) => ContainerPhase::Broken,
    }
}

/// The sliver of an inspected container; `None` if it is not a sliver of `node`.
pub fn observe(node: &str, c: ContainerInspectResponse) -> Option<ObservedSliver> {
    let config_labels = c.config.as_ref()?.labels.as_ref()?;
    if config_labels.get(labels::NODE).map(String::as_str) != Some(node) {
        return None;
    }
    let sliver_id = config_labels.get(labels::SLIVER)?.clone();
    let slice = config_labels
        .get(labels::SLICE)
        .cloned()
        .unwrap_or_default();
    let generation = config_labels
        .get(labels::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let state = c.state.unwrap_or_default();
    let phase = phase(state.status);
    let ended = matches!(
        phase,
        ContainerPhase::Exited { .. } | ContainerPhase::Broken
    );
    let host = c.host_config.unwrap_or_default();
    Some(ObservedSliver {
        container_id: c.id.unwrap_or_default(),
        sliver_id,
        slice,
        generation,
        phase,
        exit_code: if ended { state.exit_code } else { None },
        oom_killed: state.oom_killed.unwrap_or(false),
        restarts: c.restart_count.unwrap_or(0).try_into().unwrap_or(0),
        limits: Resources {
            cpu_millis: host.nano_cpus.unwrap_or(0) / 1_000_000,
            memory_bytes: host.memory.unwrap_or(0),
            disk_bytes: config_labels
                .get(labels::DISK)
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        },
        error: state.error.filter(|e| !e.is_empty()),
        ends_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ContainerStateStatusEnum as S;

    #[test]
    fn every_docker_status_has_a_neutral_phase() {
        assert_eq!(phase(Some(S::RESTARTING)), ContainerPhase::RESTARTING);
        assert_eq!(phase(Some(S::DEAD)), ContainerPhase::Broken);
        assert_eq!(phase(Some(S::STOPPING)), ContainerPhase::Running);
        assert_eq!(phase(Some(S::REMOVING)), ContainerPhase::Removing);
        assert_eq!(phase(None), ContainerPhase::Created);
    }
}
