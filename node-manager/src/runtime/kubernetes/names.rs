//! Names and labels of what the Kubernetes backend creates. Like the Docker labels in
//! `runtime::labels`, they are the agent's memory: a restarted agent knows its slivers only
//! from these, so they must stay stable across versions.
//!
//! Today one agent speaks for ONE Kubernetes node, so a slice gets a namespace per node it has
//! slivers on (`sb-<slice>-<node>`): that node's agent owns it outright, its quota is exactly
//! that node's slivers' sum, and removing it when its last sliver goes never touches another
//! agent's Pods. The slice label ties a slice's namespaces together (network policies).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::domain::SliverSpec;

/// Marks everything Slicebed created.
pub const MANAGED: &str = "slicebed.dev/managed";
/// The Slicebed node (the Kubernetes node's agent) that owns an object.
pub const NODE: &str = "slicebed.dev/node";
/// Slice of a namespace or Pod.
pub const SLICE: &str = "slicebed.dev/slice";
/// Sliver id of a Pod.
pub const SLIVER: &str = "slicebed.dev/sliver";
/// Index of the sliver in its slice.
pub const INDEX: &str = "slicebed.dev/index";
/// Spec generation the Pod was created from.
pub const GENERATION: &str = "slicebed.dev/generation";
/// Annotation of a Pod: the lease end (Unix seconds) its `activeDeadlineSeconds` was set for.
pub const LEASE_END: &str = "slicebed.dev/lease-end";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "slicebed-node-manager";
/// The one container of a sliver's Pod.
pub const CONTAINER: &str = "sliver";
/// Name of the quota, the limit range and the isolating policy in a slice namespace.
pub const SLICE_OBJECT: &str = "slicebed";

/// A DNS label (63 characters at most): `name` itself if it fits, otherwise cut and followed by
/// a hash of the whole name, so two long names never collide.
fn dns_label(name: String) -> String {
    if name.len() <= 63 {
        return name;
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let mut cut: String = name.chars().take(54).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    format!("{cut}-{}", &hash[..8])
}

/// Namespace of `slice` on Kubernetes node `node`.
pub fn namespace(slice: &str, node: &str) -> String {
    dns_label(format!("sb-{slice}-{node}"))
}

/// Pod name of a sliver generation and lease end: a replacement (a new generation, or a
/// renewed lease the old Pod's deadline cannot reach) never waits for the old Pod's name.
pub fn pod_name(spec: &SliverSpec) -> String {
    let base = format!("sb-{}-g{}", spec.sliver_id, spec.generation);
    dns_label(match lease_end_secs(spec) {
        Some(end) => format!("{base}-l{end}"),
        None => base,
    })
}

/// The lease end of `spec` in Unix seconds, rounded up.
pub fn lease_end_secs(spec: &SliverSpec) -> Option<u64> {
    let end = spec.lease_expires_at?;
    let d = end.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// NetworkPolicy letting anyone reach the published ports of one sliver.
pub fn published_policy(sliver_id: &str) -> String {
    dns_label(format!("published-{sliver_id}"))
}

/// The container id the node manager knows a Pod by: `namespace/name`.
pub fn container_id(namespace: &str, pod: &str) -> String {
    format!("{namespace}/{pod}")
}

/// `(namespace, pod)` of a container id; `None` if it is not one of ours.
pub fn split_container_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
        .filter(|(ns, pod)| !ns.is_empty() && !pod.is_empty() && !pod.contains('/'))
}

/// Label selector for everything of this node.
pub fn node_selector(node: &str) -> String {
    format!("{MANAGED}=true,{NODE}={node}")
}

/// Labels of a slice namespace.
pub fn namespace_labels(slice: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (NODE.to_string(), node.to_string()),
        (SLICE.to_string(), slice.to_string()),
    ])
}

/// Labels of a sliver's Pod.
pub fn pod_labels(node: &str, spec: &SliverSpec) -> BTreeMap<String, String> {
    let mut l = namespace_labels(&spec.slice, node);
    l.insert(SLIVER.to_string(), spec.sliver_id.clone());
    l.insert(INDEX.to_string(), spec.index.to_string());
    l.insert(GENERATION.to_string(), spec.generation.to_string());
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_dns_labels_and_do_not_collide() {
        assert_eq!(namespace("web", "k1"), "sb-web-k1");
        let long = "a".repeat(70);
        let a = namespace(&long, "node-1");
        let b = namespace(&long, "node-2");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(
            split_container_id("sb-web-k1/sb-x-g1"),
            Some(("sb-web-k1", "sb-x-g1"))
        );
        assert_eq!(split_container_id("abc"), None);
        assert_eq!(split_container_id("a/b/c"), None);
        assert_eq!(
            node_selector("k1"),
            "slicebed.dev/managed=true,slicebed.dev/node=k1"
        );
    }
}
