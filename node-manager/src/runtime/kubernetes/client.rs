//! Reaching the cluster: a kube [`Client`] from a kubeconfig file (or the in-cluster service
//! account), the node this agent speaks for, and kube's errors in the runtime's words.

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::domain::Resources;
use crate::runtime::RuntimeError;

/// A client from the kubeconfig at `path`, or from the Pod's service account when `None`.
pub async fn client(path: Option<&Path>) -> anyhow::Result<Client> {
    let config = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|e| {
                anyhow::anyhow!("--kubeconfig {}: cannot read it: {e}", p.display())
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", p.display()))?
        }
        None => Config::incluster()
            .map_err(|e| anyhow::anyhow!("no --kubeconfig and not running in a cluster: {e}"))?,
    };
    Ok(Client::try_from(config)?)
}

/// What the agent needs of its Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Allocatable cpu and memory (disk 0: the cluster does not say).
    pub allocatable: Resources,
    /// Its InternalIP (else ExternalIP), where published ports listen.
    pub address: Option<IpAddr>,
    /// Cordoned.
    pub unschedulable: bool,
}

/// Facts about node `name`; an error naming `--kube-node` if the cluster has no such node.
pub async fn node_facts(client: &Client, name: &str) -> anyhow::Result<NodeFacts> {
    let node = Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read node {name:?} from the cluster: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("--kube-node {name:?}: the cluster has no node of that name")
        })?;
    let status = node.status.unwrap_or_default();
    let alloc = status.allocatable.unwrap_or_default();
    let allocatable = Resources {
        cpu_millis: alloc
            .get("cpu")
            .and_then(|q| slicebed_units::parse_cpu(&q.0).ok())
            .unwrap_or(0),
        memory_bytes: alloc
            .get("memory")
            .and_then(|q| slicebed_units::parse_size(&q.0).ok())
            .unwrap_or(0),
        disk_bytes: 0,
    };
    let addrs = status.addresses.unwrap_or_default();
    let address = ["InternalIP", "ExternalIP"].iter().find_map(|t| {
        addrs
            .iter()
            .find(|a| a.type_ == *t)
            .and_then(|a| a.address.parse().ok())
    });
    Ok(NodeFacts {
        allocatable,
        address,
        unschedulable: node.spec.and_then(|s| s.unschedulable).unwrap_or(false),
    })
}

/// kube's error in the runtime's terms: the API server's refusal as its message, anything
/// that never got an answer as unavailable.
pub fn error(op: impl Into<String>, e: kube::Error) -> RuntimeError {
    let op = op.into();
    match e {
        kube::Error::Api(s) => RuntimeError::Engine {
            op,
            message: if s.message.is_empty() {
                s.reason.clone()
            } else {
                s.message.clone()
            },
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => RuntimeError::Unavailable {
            op,
            message: e.to_string(),
        },
        other => RuntimeError::Engine {
            op,
            message: other.to_string(),
        },
    }
}

/// Whether `e` is the API server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
