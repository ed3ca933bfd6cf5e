//! Reads a sliver back from its Pod: labels (the source of truth), limits, and the Pod's phase
//! and container status mapped to a [`ContainerPhase`] with an error a researcher can act on
//! (an image the cluster cannot pull, OOM, a crash loop with its exit code, a scheduler
//! refusal, the lease deadline). Pure.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use slicebed_units::{parse_cpu, parse_size};

use super::names;
use crate::domain::{ContainerPhase, ObservedSliver, Resources};

/// The sliver of `pod`; `None` if it carries no sliver label (not ours).
pub fn observe(pod: &Pod) -> Option<ObservedSliver> {
    let labels = pod.metadata.labels.as_ref()?;
    let sliver_id = labels.get(names::SLIVER)?.clone();
    let slice = labels.get(names::SLICE).cloned().unwrap_or_default();
    let generation = labels
        .get(names::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let limits = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .map(|l| Resources {
            cpu_millis: l.get("cpu").and_then(|q| parse_cpu(&q.0).ok()).unwrap_or(0),
            memory_bytes: l
                .get("memory")
                .and_then(|q| parse_size(&q.0).ok())
                .unwrap_or(0),
            disk_bytes: l
                .get("ephemeral-storage")
                .and_then(|q| parse_size(&q.0).ok())
                .unwrap_or(0),
        })
        .unwrap_or_default();
    let image = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let status = pod.status.as_ref();
    let cs: Option<&ContainerStatus> = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|v| v.first());
    let restarts = cs.map_or(0, |c| c.restart_count.max(0) as u32);
    let state = cs.and_then(|c| c.state.as_ref());
    let last = cs
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let ended = terminated.or(last);
    let exit_code = ended.map(|t| i64::from(t.exit_code));
    let oom_killed = ended.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
    let pod_phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let pod_reason = status.and_then(|s| s.reason.as_deref());
    let mut error = None;
    let phase = if pod.metadata.deletion_timestamp.is_some() {
        ContainerPhase::Removing
    } else {
        match pod_phase {
            "Running" if state.is_some_and(|s| s.running.is_some()) => ContainerPhase::Running,
            "Running" => {
                if let Some(w) = waiting {
                    error =
                        waiting_error(w.reason.as_deref(), w.message.as_deref(), &image, exit_code);
                }
                ContainerPhase::RESTARTING
            }
            "Succeeded" => ContainerPhase::EXITED,
            "Failed" => {
                if pod_reason == Some("DeadlineExceeded") {
                    error = Some(
                        "the cluster ended the sliver at its lease's end (DeadlineExceeded)".into(),
                    );
                } else if oom_killed {
                    error =
                        Some("killed by the cluster for running out of memory (OOMKilled)".into());
                } else if let Some(m) = status.and_then(|s| s.message.clone()) {
                    error = Some(m);
                }
                ContainerPhase::EXITED
            }
            _ => {
                if let Some(w) = waiting {
                    error =
                        waiting_error(w.reason.as_deref(), w.message.as_deref(), &image, exit_code);
                }
                if error.is_none() {
                    error = unschedulable(pod);
                }
                if error.is_some() {
                    // Reported as failed with the reason, but kept: the kubelet and the
                    // scheduler retry by themselves (a pushed image, a freed node), and a
                    // replacement would only start the same wait again.
                    ContainerPhase::EXITED
                } else {
                    ContainerPhase::Created
                }
            }
        }
    };
    Some(ObservedSliver {
        container_id: names::container_id(&ns, &name),
        sliver_id,
        slice,
        generation,
        phase,
        exit_code,
        oom_killed,
        restarts,
        limits,
        error,
        ends_at: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::LEASE_END))
            .and_then(|s| s.parse::<u64>().ok())
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
    })
}

/// Words for a container waiting for a reason that needs someone to act.
fn waiting_error(
    reason: Option<&str>,
    message: Option<&str>,
    image: &str,
    exit_code: Option<i64>,
) -> Option<String> {
    let msg = message.unwrap_or("");
    match reason? {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => Some(
            format!("image {image} cannot be pulled by the cluster: {msg}"),
        ),
        "CrashLoopBackOff" => Some(match exit_code {
            Some(c) => format!("crashing repeatedly (CrashLoopBackOff), last exit code {c}"),
            None => "crashing repeatedly (CrashLoopBackOff)".to_string(),
        }),
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
            Some(format!("the cluster cannot start the sliver: {msg}"))
        }
        _ => None,
    }
}

/// The scheduler's refusal, if the Pod is unschedulable.
fn unschedulable(pod: &Pod) -> Option<String> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    (c.reason.as_deref() == Some("Unschedulable")).then(|| {
        format!(
            "the cluster cannot place the sliver on its node: {}",
            c.message.clone().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sb-s1-g4", "namespace": "sb-web-k1", "labels": {
                "slicebed.dev/sliver": "s1", "slicebed.dev/slice": "web",
                "slicebed.dev/generation": "4"}},
            "spec": {"containers": [{"name": "sliver", "image": "img:1",
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_lease_end_a_pod_was_made_for_is_read_back() {
        let mut p = pod(serde_json::json!({"phase": "Running"}));
        p.metadata.annotations =
            Some([(names::LEASE_END.to_string(), "1700000000".to_string())].into());
        assert_eq!(
            observe(&p).unwrap().ends_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn the_lease_deadline_and_the_scheduler_are_named() {
        let o = observe(&pod(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}),
        ))
        .unwrap();
        assert_eq!(o.container_id, "sb-web-k1/sb-s1-g4");
        assert_eq!(o.generation, 4);
        assert_eq!(o.ends_at, None, "no lease annotation");
        assert_eq!(o.limits.cpu_millis, 250);
        assert_eq!(o.limits.memory_bytes, 64 << 20);
        assert_eq!(o.phase, ContainerPhase::EXITED);
        assert!(o.error.unwrap().contains("lease's end (DeadlineExceeded)"));
        let o = observe(&pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient cpu."}]})))
        .unwrap();
        assert_eq!(o.phase, ContainerPhase::EXITED);
        assert_eq!(
            o.error.as_deref(),
            Some("the cluster cannot place the sliver on its node: 0/1 nodes are available: 1 Insufficient cpu.")
        );
        let o = observe(&pod(serde_json::json!({"phase": "Pending"}))).unwrap();
        assert_eq!((o.phase, o.error), (ContainerPhase::Created, None));
        let mut foreign = pod(serde_json::json!({}));
        foreign.metadata.labels = None;
        assert!(observe(&foreign).is_none());
    }
}
