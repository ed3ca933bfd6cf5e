//! The cluster's Nodes as a cluster agent needs them: a watch (kube-runtime's watcher, which
//! relists after a 410 and reconnects with backoff; never a poll) turned into what each node
//! offers, and the cordon the agent sets when the service drains a member. This module only
//! reads Nodes, and writes nothing but `spec.unschedulable`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use super::client::{error, NodeFacts};
use crate::domain::Resources;
use crate::runtime::RuntimeError;

/// One Kubernetes node as a Slicebed member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeNode {
    /// The Node's name.
    pub name: String,
    /// Its labels (the seed of the member's placement labels).
    pub labels: BTreeMap<String, String>,
    /// Allocatable cpu and memory, ephemeral-storage as disk (0 when the Node says nothing),
    /// address and cordon.
    pub facts: NodeFacts,
}

/// What the watch says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A (re)list starts: nodes not `Seen` before `Listed` are gone.
    Relisting,
    /// A node exists as shown (added, changed, or listed).
    Seen(KubeNode),
    /// The (re)list is complete.
    Listed,
    /// A node was deleted.
    Gone(String),
}

/// What a Node object offers.
pub fn kube_node(node: &Node) -> KubeNode {
    let status = node.status.clone().unwrap_or_default();
    let alloc = status.allocatable.unwrap_or_default();
    let quantity = |k: &str, parse: fn(&str) -> Option<i64>| {
        alloc.get(k).and_then(|q| parse(&q.0)).unwrap_or(0)
    };
    let allocatable = Resources {
        cpu_millis: quantity("cpu", |s| slicebed_units::parse_cpu(s).ok()),
        memory_bytes: quantity("memory", |s| slicebed_units::parse_size(s).ok()),
        disk_bytes: quantity("ephemeral-storage", |s| slicebed_units::parse_size(s).ok()),
    };
    let addrs = status.addresses.unwrap_or_default();
    let address: Option<IpAddr> = ["InternalIP", "ExternalIP"].iter().find_map(|t| {
        addrs
            .iter()
            .find(|a| a.type_ == *t)
            .and_then(|a| a.address.parse().ok())
    });
    KubeNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        facts: NodeFacts {
            allocatable,
            address,
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
        },
    }
}

/// Watches every Node of the cluster. Errors (the API server away, 410 Gone) are retried by
/// the watcher with backoff and logged here; the stream ends only when dropped.
pub fn watch(client: Client) -> impl Stream<Item = NodeEvent> + Send {
    let api = Api::<Node>::all(client);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(watcher::Event::Init) => Some(NodeEvent::Relisting),
                Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n)) => {
                    Some(NodeEvent::Seen(kube_node(&n)))
                }
                Ok(watcher::Event::InitDone) => Some(NodeEvent::Listed),
                Ok(watcher::Event::Delete(n)) => n.metadata.name.map(NodeEvent::Gone),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the cluster's nodes failed; retrying");
                    None
                }
            }
        })
}

/// Cordons (`true`) or uncordons Node `name`: a merge patch of `spec.unschedulable` only,
/// as `kubectl cordon` does.
pub async fn set_cordon(client: &Client, name: &str, cordon: bool) -> Result<(), RuntimeError> {
    let patch = serde_json::json!({ "spec": { "unschedulable": cordon } });
    Api::<Node>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| error(format!("cordon node {name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_offers_its_allocatable_its_internal_ip_and_its_cordon() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "w1", "labels": { "zone": "a" } },
            "spec": { "unschedulable": true },
            "status": {
                "allocatable": { "cpu": "3500m", "memory": "8Gi", "ephemeral-storage": "10Gi" },
                "addresses": [
                    { "type": "Hostname", "address": "w1" },
                    { "type": "ExternalIP", "address": "203.0.113.9" },
                    { "type": "InternalIP", "address": "10.0.0.7" }
                ]
            }
        }))
        .unwrap();
        let k = kube_node(&node);
        assert_eq!(k.name, "w1");
        assert_eq!(k.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(k.facts.allocatable.cpu_millis, 3500);
        assert_eq!(k.facts.allocatable.memory_bytes, 8 << 30);
        assert_eq!(k.facts.allocatable.disk_bytes, 10 << 30);
        assert_eq!(k.facts.address, Some("10.0.0.7".parse().unwrap()));
        assert!(k.facts.unschedulable);
    }
}
