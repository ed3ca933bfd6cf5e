//! Names and labels of what a node creates in the engine. They are the node's memory:
//! after a restart the node manager knows its slivers only from these labels, so they
//! must stay stable across versions.

use std::collections::HashMap;

use crate::domain::SliverSpec;

/// Marks everything Slicebed created.
pub const MANAGED: &str = "slicebed.managed";
/// The node that owns a container or network (several nodes may share one engine).
pub const NODE: &str = "slicebed.node";
/// Slice of a container or network.
pub const SLICE: &str = "slicebed.slice";
/// Sliver id of a container.
pub const SLIVER: &str = "slicebed.sliver";
/// Index of the sliver in its slice.
pub const INDEX: &str = "slicebed.index";
/// Spec generation the container was created from.
pub const GENERATION: &str = "slicebed.generation";
/// Disk limit asked for, recorded only (see `runtime::docker` for why it is not enforced).
pub const DISK: &str = "slicebed.disk";

/// Container name of a sliver on a node.
pub fn container_name(node: &str, sliver_id: &str) -> String {
    format!("sb-{node}-{sliver_id}")
}

/// Network name of a slice on a node.
pub fn network_name(node: &str, slice: &str) -> String {
    format!("sb-{node}-{slice}")
}

/// Hostname of a sliver: `<slice>-<index>`, cut to the 63 characters of a DNS label.
pub fn hostname(slice: &str, index: u32) -> String {
    let mut h = format!("{slice}-{index}");
    h.truncate(63);
    h
}

/// `label=value` filter selecting this node's objects.
pub fn node_filter(node: &str) -> String {
    format!("{NODE}={node}")
}

/// Labels of a sliver container.
pub fn container_labels(node: &str, spec: &SliverSpec) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (NODE.to_string(), node.to_string()),
        (SLICE.to_string(), spec.slice.clone()),
        (SLIVER.to_string(), spec.sliver_id.clone()),
        (INDEX.to_string(), spec.index.to_string()),
        (GENERATION.to_string(), spec.generation.to_string()),
        (DISK.to_string(), spec.resources.disk_bytes.to_string()),
    ])
}

/// Labels of a slice network.
pub fn network_labels(node: &str, slice: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (NODE.to_string(), node.to_string()),
        (SLICE.to_string(), slice.to_string()),
    ])
}
