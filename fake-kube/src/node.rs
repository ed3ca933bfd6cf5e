//! Nodes as a kubelet registers them: capacity and allocatable, labels (with the well-known
//! `kubernetes.io/hostname`), an InternalIP on 127.0.0.x, and a Ready condition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{json, Value};

/// A node to register.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Kubernetes quantities: `"4"`, `"8Gi"`.
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    /// InternalIP; the next 127.0.0.x when None.
    pub address: Option<String>,
}

static NEXT_ADDRESS: AtomicU8 = AtomicU8::new(2);

impl NodeConfig {
    /// 4 CPUs, 8Gi, 110 Pods, no extra labels.
    pub fn new(name: &str) -> Self {
        NodeConfig {
            name: name.into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            address: None,
        }
    }

    pub fn object(&self) -> Value {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        let address = self.address.clone().unwrap_or_else(|| {
            let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed).max(2);
            format!("127.0.0.{n}")
        });
        let resources =
            json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()});
        json!({
            "metadata": {"name": self.name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": self.name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status (simulated by slicebed-fake-kube)"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-slicebed-fake-kube", "containerRuntimeVersion": "fake://0",
                    "operatingSystem": "linux", "architecture": "amd64", "osImage": "fake", "kernelVersion": "fake",
                    "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
            },
        })
    }
}
