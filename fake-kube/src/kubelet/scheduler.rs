//! Binding for Pods that arrive without `spec.nodeName`: a node that is schedulable, matches the
//! Pod's `nodeSelector` and has room for its requests, or an Unschedulable reason worded like
//! kube-scheduler's. No affinity, taints, spreading or preemption (see docs/kubernetes.md).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::kinds;
use crate::store::Store;
use crate::validate::quantity;

/// Sum of a Pod's container requests of `res` (millicores or bytes).
pub fn requests(pod: &Value, res: &str) -> i64 {
    pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| quantity(&c["resources"]["requests"][res], res))
                .sum()
        })
        .unwrap_or(0)
}

/// Whether the node's Ready condition is True.
pub fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The node to bind `pod` to, or the scheduler's message saying why none fits.
pub fn schedule(store: &Store, pod: &Value) -> Result<String, String> {
    let nodes: Vec<&Value> = store.list(kinds::nodes(), None).collect();
    let selector = pod["spec"]["nodeSelector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(i64, String)> = None;
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
        let labels = &node["metadata"]["labels"];
        let reason = if node["spec"]["unschedulable"].as_bool() == Some(true) {
            Some("node(s) were unschedulable".to_string())
        } else if !ready(node) {
            // The node lifecycle controller taints a node whose kubelet went silent.
            Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }".to_string())
        } else if !selector.iter().all(|(k, v)| &labels[k] == v) {
            Some("node(s) didn't match Pod's node affinity/selector".to_string())
        } else {
            let used = |res: &str| -> i64 {
                store
                    .list(kinds::pods(), None)
                    .filter(|p| p["spec"]["nodeName"].as_str() == Some(&name) && !terminal(p))
                    .map(|p| requests(p, res))
                    .sum()
            };
            let short: Vec<&str> = ["cpu", "memory"]
                .into_iter()
                .filter(|r| {
                    let alloc = quantity(&node["status"]["allocatable"][*r], r).unwrap_or(0);
                    used(r) + requests(pod, r) > alloc
                })
                .collect();
            if short.is_empty() {
                let free = quantity(&node["status"]["allocatable"]["cpu"], "cpu").unwrap_or(0)
                    - used("cpu");
                if best.as_ref().is_none_or(|(f, _)| free > *f) {
                    best = Some((free, name.clone()));
                }
                None
            } else {
                Some(
                    short
                        .iter()
                        .map(|r| format!("Insufficient {r}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
        };
        if let Some(r) = reason {
            *reasons.entry(r).or_default() += 1;
        }
    }
    if let Some((_, name)) = best {
        return Ok(name);
    }
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let n = nodes.len();
    Err(format!(
        "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.",
        if parts.is_empty() { "no nodes available to schedule pods".to_string() } else { parts.join(", ") }
    ))
}
