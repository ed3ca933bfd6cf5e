//! The simulated containers: per-Pod progress, scripted behaviours, log buffers, and the Pod
//! status each stage shows (phase, conditions, containerStatuses) as a real kubelet reports it.
//!
//! Nothing runs: a "container" is a state and a few generated log lines. Status built here is a
//! pure function of the progress record, so an unchanged Pod is never rewritten.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

/// What a simulated container does, set by the `fake-kube.slicebed.dev/behaviour` annotation or
/// by [`crate::FakeKubeHandle::set_behaviour`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Starts and keeps running.
    Run,
    /// The image cannot be pulled: ErrImagePull then ImagePullBackOff, Pod stays Pending.
    ImagePullFail,
    /// Runs, then is killed for memory: OOMKilled, exit code 137.
    Oom,
    /// Runs, then exits with this code (0: Completed, else Error).
    Exit(i32),
    /// Exits with code 1 every time it starts: CrashLoopBackOff under restartPolicy Always.
    CrashLoop,
}

pub const ANNOTATION: &str = "fake-kube.slicebed.dev/behaviour";

impl Behaviour {
    /// Reads `run`, `image-pull-fail`, `oom`, `exit:N`, `crashloop`.
    pub fn parse(s: &str) -> Option<Behaviour> {
        Some(match s.trim() {
            "run" => Behaviour::Run,
            "image-pull-fail" => Behaviour::ImagePullFail,
            "oom" => Behaviour::Oom,
            "crashloop" => Behaviour::CrashLoop,
            other => Behaviour::Exit(other.strip_prefix("exit:")?.parse().ok()?),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Creating,
    PullBackOff,
    Running {
        started: String,
    },
    /// Exited and waiting to restart.
    BackOff {
        last: Value,
    },
    /// Exited for good (restart policy says no, the deadline passed, or the Pod is being deleted).
    Done {
        terminated: Value,
        phase: &'static str,
        reason: Option<&'static str>,
        message: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct PodSim {
    pub stage: Stage,
    pub since: Instant,
    pub started: Instant,
    pub start_time: String,
    pub restarts: u32,
    pub pod_ip: String,
    pub host_ip: String,
    pub last_log: Instant,
    pub ticks: u64,
}

/// Log lines of one container (all its restarts), and whether more can come.
#[derive(Debug, Default, Clone)]
pub struct LogBuf {
    pub lines: Vec<(String, String)>,
    pub closed: bool,
}

#[derive(Default)]
pub struct Sim {
    pub pods: HashMap<String, PodSim>,
    /// By (pod uid, container name).
    pub logs: HashMap<(String, String), LogBuf>,
    pub next_ip: u32,
}

impl Sim {
    pub fn log(&mut self, uid: &str, container: &str, line: String) {
        let buf = self
            .logs
            .entry((uid.to_string(), container.to_string()))
            .or_default();
        buf.lines.push((crate::meta::now(), line));
    }

    pub fn close_logs(&mut self, uid: &str) {
        for ((u, _), buf) in self.logs.iter_mut() {
            if u == uid {
                buf.closed = true;
            }
        }
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The Pod status for this progress record (`spec` gives container names and images).
pub fn status(spec: &Value, old: &Value, p: &PodSim) -> Value {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let (phase, ready) = match &p.stage {
        Stage::Creating | Stage::PullBackOff => ("Pending", false),
        Stage::Running { .. } => ("Running", true),
        Stage::BackOff { .. } => ("Running", false),
        Stage::Done { phase, .. } => (*phase, false),
    };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("");
            let image = c["image"].as_str().unwrap_or("");
            let state = match &p.stage {
                Stage::Creating => json!({"waiting": {"reason": "ContainerCreating"}}),
                Stage::PullBackOff => json!({"waiting": {"reason": "ImagePullBackOff", "message": format!(
                    "Back-off pulling image \"{image}\": ErrImagePull: failed to pull and unpack image \"{image}\": \
                     failed to resolve reference \"{image}\": not found")}}),
                Stage::Running { started } => json!({"running": {"startedAt": started}}),
                Stage::BackOff { .. } => json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off 10s restarting failed container={name} pod={}", old["metadata"]["name"].as_str().unwrap_or(""))}}),
                Stage::Done { terminated, .. } => json!({ "terminated": terminated }),
            };
            let mut s = json!({"name": name, "image": image, "imageID": "", "ready": ready,
                "restartCount": p.restarts, "started": matches!(p.stage, Stage::Running { .. }), "state": state});
            if let Stage::BackOff { last } = &p.stage {
                s["lastState"] = json!({ "terminated": last });
            }
            s
        })
        .collect();
    let mut st = json!({
        "phase": phase,
        "qosClass": old["status"]["qosClass"],
        "hostIP": p.host_ip,
        "hostIPs": [{"ip": p.host_ip}],
        "podIP": p.pod_ip,
        "podIPs": [{"ip": p.pod_ip}],
        "startTime": p.start_time,
        "conditions": [
            condition("PodScheduled", true, None),
            condition("Initialized", true, None),
            condition("ContainersReady", ready, (!ready).then_some("ContainersNotReady")),
            condition("Ready", ready, (!ready).then_some("ContainersNotReady")),
        ],
        "containerStatuses": statuses,
    });
    if let Stage::Done {
        reason: Some(r),
        message,
        ..
    } = &p.stage
    {
        st["reason"] = json!(r);
        st["message"] = json!(message);
    }
    st
}

/// A terminated container state; without `startedAt` for a container that never started (a
/// Pod deleted while still being created), as a real kubelet leaves it out rather than empty.
pub fn terminated(code: i32, reason: &str, started: &str) -> Value {
    let mut t = json!({"exitCode": code, "reason": reason, "finishedAt": crate::meta::now()});
    if !started.is_empty() {
        t["startedAt"] = json!(started);
    }
    t
}
