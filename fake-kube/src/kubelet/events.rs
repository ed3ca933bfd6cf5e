//! core/v1 Events about Pods, as kube-scheduler and the kubelet record them (Scheduled,
//! FailedScheduling, Pulled, Started, Failed, BackOff, Killing, DeadlineExceeded), so
//! `kubectl describe` and a client reading Events see why a Pod is where it is.
//!
//! One Event per transition; repeats are not counted up as a real recorder does.

use serde_json::{json, Value};

use super::sim::Stage;
use crate::kinds;
use crate::meta;
use crate::ops;
use crate::store::Store;

/// Records an Event about `pod`; a namespace being deleted refuses it, which is fine.
pub fn record(
    store: &mut Store,
    pod: &Value,
    warning: bool,
    reason: &str,
    message: String,
    component: &str,
) {
    let ns = meta::namespace(pod).to_string();
    let now = meta::now();
    let host = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let ev = json!({
        "metadata": {"generateName": format!("{}.", meta::name(pod))},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": meta::name(pod),
            "uid": pod["metadata"]["uid"]},
        "type": if warning { "Warning" } else { "Normal" },
        "reason": reason,
        "message": message,
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": component, "host": host},
        "reportingComponent": component,
    });
    let events = kinds::by_plural("events").expect("events are served");
    let _ = ops::create(store, events, &ns, ev);
}

fn image(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The kubelet's Events for a step from `before` to `after`.
pub fn transition(store: &mut Store, pod: &Value, before: &Stage, after: &Stage) {
    if std::mem::discriminant(before) == std::mem::discriminant(after) {
        return;
    }
    let img = image(pod);
    let name = pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    match after {
        Stage::Running { .. } => {
            let pulled = format!("Container image \"{img}\" already present on machine");
            record(store, pod, false, "Pulled", pulled, "kubelet");
            record(
                store,
                pod,
                false,
                "Started",
                format!("Started container {name}"),
                "kubelet",
            );
        }
        Stage::PullBackOff => {
            let failed = format!("Failed to pull image \"{img}\": not found");
            record(store, pod, true, "Failed", failed, "kubelet");
            record(
                store,
                pod,
                true,
                "BackOff",
                format!("Back-off pulling image \"{img}\""),
                "kubelet",
            );
        }
        Stage::BackOff { .. } => {
            let msg = format!(
                "Back-off restarting failed container {name} in pod {}",
                meta::name(pod)
            );
            record(store, pod, true, "BackOff", msg, "kubelet");
        }
        Stage::Done {
            reason: Some(r),
            message,
            ..
        } => {
            record(
                store,
                pod,
                false,
                r,
                message.clone().unwrap_or_default(),
                "kubelet",
            );
        }
        _ => {}
    }
}
