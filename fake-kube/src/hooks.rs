//! Test hooks: reading stored objects, scripting the simulated kubelet, adding, removing and
//! cordoning nodes, expiring watches. They go through the same store and rules as API requests,
//! so watches see what they do.

use anyhow::Context;
use serde_json::Value;

use crate::kinds;
use crate::ops;
use crate::{Behaviour, FakeKube, NodeConfig};

impl FakeKube {
    fn kind(plural: &str) -> anyhow::Result<&'static kinds::Kind> {
        kinds::by_plural(plural).with_context(|| format!("the fake does not serve {plural}"))
    }

    /// A stored object, as the server holds it (`plural` as in URLs: "pods", "networkpolicies").
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = Self::kind(plural).ok()?;
        self.shared
            .store
            .lock()
            .expect("store lock")
            .get(kind, namespace, name)
            .cloned()
    }

    /// Stored objects of a kind, in one namespace or all.
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(kind) = Self::kind(plural) else {
            return vec![];
        };
        self.shared
            .store
            .lock()
            .expect("store lock")
            .list(kind, namespace)
            .cloned()
            .collect()
    }

    /// Creates an object as a client's POST would (same validation and defaults).
    pub fn create(&self, plural: &str, namespace: &str, obj: Value) -> anyhow::Result<Value> {
        let kind = Self::kind(plural)?;
        Ok(ops::create(
            &mut self.shared.store.lock().expect("store lock"),
            kind,
            namespace,
            obj,
        )?)
    }

    /// Sets what the Pod's simulated containers do, overriding its annotation (it may be set
    /// before the Pod exists; a Running Pod given a failing behaviour fails on the next step).
    pub fn set_behaviour(&self, namespace: &str, pod: &str, b: Behaviour) {
        self.shared
            .behaviours
            .lock()
            .expect("behaviours lock")
            .insert((namespace.into(), pod.into()), b);
    }

    /// Adds a node (as a joining machine's kubelet would register it).
    pub fn add_node(&self, n: &NodeConfig) -> anyhow::Result<Value> {
        self.create("nodes", "", n.object())
    }

    /// Removes a node object, as `kubectl delete node` does; its Pods stay as they are.
    pub fn remove_node(&self, name: &str) -> bool {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .remove(kinds::nodes(), "", name)
            .is_some()
    }

    /// Sets a node's `spec.unschedulable`, as `kubectl cordon`/`uncordon` would.
    pub fn set_unschedulable(&self, name: &str, unschedulable: bool) -> anyhow::Result<()> {
        let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
        let mut store = self.shared.store.lock().expect("store lock");
        ops::patch(
            &mut store,
            kinds::nodes(),
            "",
            name,
            ops::PatchType::Merge,
            patch,
            Some("test"),
            false,
        )?;
        Ok(())
    }

    /// Sets a node's Ready condition, as its kubelet posting status (true) or going silent
    /// (false: `Unknown`, as the node lifecycle controller marks it). Pods on a node that is not
    /// Ready stop changing, and the scheduler binds nothing new to it.
    pub fn set_node_ready(&self, name: &str, ready: bool) -> anyhow::Result<()> {
        let cond = if ready {
            serde_json::json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status (simulated by slicebed-fake-kube)"})
        } else {
            serde_json::json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status."})
        };
        let patch = serde_json::json!({"status": {"conditions": [cond]}});
        let mut store = self.shared.store.lock().expect("store lock");
        ops::patch(
            &mut store,
            kinds::nodes(),
            "",
            name,
            ops::PatchType::Merge,
            patch,
            Some("test"),
            true,
        )?;
        Ok(())
    }

    /// Forgets the change history and ends every open watch, so watchers that resume get 410
    /// Gone and must list again (as after an etcd compaction or an API server restart).
    pub fn expire_watches(&self) {
        self.shared.store.lock().expect("store lock").compact();
        self.shared.closing.send_modify(|g| *g += 1);
    }

    /// Appends a line to a container's log, as if the process had written it.
    pub fn write_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        line: &str,
    ) -> anyhow::Result<()> {
        let uid = self
            .get("pods", namespace, pod)
            .with_context(|| format!("no pod {namespace}/{pod}"))?["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.shared
            .sim
            .lock()
            .expect("sim lock")
            .log(&uid, container, line.to_string());
        let _ = self.shared.log_written.send(());
        Ok(())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store lock").current_rv()
    }
}
