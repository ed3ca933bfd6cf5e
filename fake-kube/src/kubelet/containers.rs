//! One simulated container step: starting, running (and logging), a scripted exit or OOM kill
//! with the restart policy's answer (CrashLoopBackOff or a terminal phase), restart after
//! back-off. Pure state changes on the progress record and the log buffers; no store writes.

use std::time::Instant;

use serde_json::{json, Value};

use super::sim::{self, Behaviour, PodSim, Sim, Stage};
use crate::meta;

pub fn advance(
    p: &mut PodSim,
    sim: &mut Sim,
    pod: &Value,
    uid: &str,
    containers: &[String],
    b: Behaviour,
    t: &crate::Timings,
) {
    let elapsed = p.since.elapsed();
    let start = |p: &mut PodSim, sim: &mut Sim| {
        p.stage = Stage::Running {
            started: meta::now(),
        };
        p.since = Instant::now();
        for c in containers {
            let image = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == json!(c))
                .map(|x| x["image"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            sim.log(
                uid,
                c,
                format!("fake-kube: container {c} started from image {image}"),
            );
        }
    };
    match p.stage.clone() {
        Stage::Creating if elapsed >= t.step => {
            if b == Behaviour::ImagePullFail {
                p.stage = Stage::PullBackOff;
            } else {
                start(p, sim);
            }
        }
        Stage::BackOff { .. } if elapsed >= t.crash_backoff => start(p, sim),
        Stage::Running { started } if b != Behaviour::Run && elapsed >= t.step => {
            let (code, reason) = match b {
                Behaviour::Oom => (137, "OOMKilled"),
                Behaviour::Exit(0) => (0, "Completed"),
                Behaviour::Exit(n) => (n, "Error"),
                _ => (1, "Error"),
            };
            for c in containers {
                sim.log(
                    uid,
                    c,
                    format!("fake-kube: container {c} exited with code {code} ({reason})"),
                );
            }
            let term = sim::terminated(code, reason, &started);
            let restart = match pod["spec"]["restartPolicy"].as_str() {
                Some("Never") => false,
                Some("OnFailure") => code != 0,
                _ => true,
            };
            p.since = Instant::now();
            if restart {
                p.restarts += 1;
                p.stage = Stage::BackOff { last: term };
            } else {
                p.stage = Stage::Done {
                    terminated: term,
                    phase: if code == 0 { "Succeeded" } else { "Failed" },
                    reason: None,
                    message: None,
                };
                sim.close_logs(uid);
            }
        }
        Stage::Running { .. } if p.last_log.elapsed() >= t.log_interval => {
            p.last_log = Instant::now();
            p.ticks += 1;
            for c in containers {
                sim.log(uid, c, format!("fake-kube: {c} tick {}", p.ticks));
            }
        }
        _ => {}
    }
}
