//! [`KubeRuntime`]: the [`Runtime`] trait over one Kubernetes node's Pods. What Kubernetes has
//! no equivalent for (pause, disk and usage counters, images made on the node) answers with an
//! error and is reported by [`Runtime::capabilities`], never silently skipped.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use super::access::{self, Execs};
use super::client::{self, error, is_not_found, NodeFacts};
use super::copy;
use super::{names, observe, slice};
use crate::domain::{ObservedSliver, SliverSpec};
use crate::runtime::{
    Capabilities, ContainerStats, DiskUse, ExecProcess, ExecSpec, ImageImport, LogsSpec, Output,
    Result, Runtime, RuntimeChange, RuntimeError, TermSize,
};

/// The Kubernetes backend for one node of a cluster.
#[derive(Clone)]
pub struct KubeRuntime {
    client: Client,
    node: String,
    kube_node: String,
    host_ip: Option<IpAddr>,
    execs: Execs,
}

fn unsupported(op: &str, why: &str) -> RuntimeError {
    RuntimeError::Engine {
        op: op.to_string(),
        message: format!("not supported by the Kubernetes backend: {why}"),
    }
}

impl KubeRuntime {
    /// The runtime of Slicebed node `node`, which is Kubernetes node `kube_node` of the cluster
    /// `kubeconfig` reaches (in-cluster when `None`). Fails, naming the flag, when the file
    /// cannot be read or the cluster has no such node.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        node: String,
        kube_node: String,
    ) -> anyhow::Result<(Self, NodeFacts)> {
        let client = client::client(kubeconfig).await?;
        let facts = client::node_facts(&client, &kube_node).await?;
        Ok((Self::new(client, node, kube_node, facts.address), facts))
    }

    /// A runtime over an existing client.
    pub fn new(client: Client, node: String, kube_node: String, host_ip: Option<IpAddr>) -> Self {
        Self {
            client,
            node,
            kube_node,
            host_ip,
            execs: Execs::default(),
        }
    }

    fn selector(&self) -> String {
        names::node_selector(&self.kube_node)
    }

    async fn pods(&self, extra: Option<String>) -> Result<Vec<Pod>> {
        let sel = match extra {
            Some(e) => format!("{},{e}", self.selector()),
            None => self.selector(),
        };
        Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default().labels(&sel))
            .await
            .map(|l| l.items)
            .map_err(|e| error("list pods", e))
    }
}

impl Runtime for KubeRuntime {
    fn node(&self) -> &str {
        &self.node
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Kubernetes cannot freeze a Pod: owner reclaim cannot pause slivers here.
            pause: false,
            // A namespace per slice and node stands for the slice network.
            slice_networks: true,
            exec: true,
            logs: true,
            copy: true,
            // NetworkPolicies isolate slices where the cluster's CNI enforces them.
            isolation: true,
            // The kubelet evicts a Pod past its ephemeral-storage limit; nothing to measure here.
            disk_usage: false,
        }
    }

    async fn ensure_network(&self, slice: &str) -> Result<()> {
        slice::ensure_namespace(&self.client, slice, &self.kube_node).await
    }

    async fn remove_network(&self, slice: &str) -> Result<()> {
        slice::delete_namespace(&self.client, &names::namespace(slice, &self.kube_node)).await
    }

    async fn list_networks(&self) -> Result<Vec<String>> {
        let l = Api::<Namespace>::all(self.client.clone())
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .map_err(|e| error("list namespaces", e))?;
        Ok(l.items
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .filter_map(|n| n.metadata.labels?.remove(names::SLICE))
            .collect())
    }

    async fn create_and_start(&self, spec: &SliverSpec) -> Result<String> {
        slice::create(&self.client, &self.kube_node, spec, self.host_ip).await
    }

    /// A Pod's containers are started by the kubelet: nothing to do for a live Pod; an
    /// ended one cannot be started again (the reconciler replaces it).
    async fn start(&self, container_id: &str) -> Result<()> {
        match self.inspect(container_id).await? {
            Some(o) if o.phase != crate::domain::ContainerPhase::EXITED => Ok(()),
            _ => Err(unsupported(
                &format!("start {container_id}"),
                "an ended Pod cannot be started again; the sliver is recreated",
            )),
        }
    }

    async fn pause(&self, _container_id: &str) -> Result<()> {
        Err(unsupported("pause", "Kubernetes cannot freeze a Pod"))
    }

    async fn unpause(&self, _container_id: &str) -> Result<()> {
        Err(unsupported("unpause", "Kubernetes cannot freeze a Pod"))
    }

    /// A Pod cannot be stopped and kept: stopping deletes it (its namespace stays).
    async fn stop(&self, container_id: &str) -> Result<()> {
        let Some((ns, name)) = names::split_container_id(container_id) else {
            return Ok(());
        };
        match Api::<Pod>::namespaced(self.client.clone(), ns)
            .delete(name, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(error(format!("stop {container_id}"), e)),
        }
    }

    async fn disk_usage(&self) -> Result<Vec<DiskUse>> {
        Err(unsupported(
            "disk usage",
            "the kubelet enforces ephemeral-storage limits itself",
        ))
    }

    async fn stats(&self) -> Result<Vec<ContainerStats>> {
        Err(unsupported(
            "stats",
            "usage counters are not read from the cluster yet",
        ))
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        slice::delete(&self.client, &self.kube_node, container_id).await
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        Ok(self
            .pods(None)
            .await?
            .iter()
            .filter_map(observe::observe)
            .collect())
    }

    async fn find_sliver(&self, sliver_id: &str) -> Result<Option<ObservedSliver>> {
        let mut found: Vec<ObservedSliver> = self
            .pods(Some(format!("{}={sliver_id}", names::SLIVER)))
            .await?
            .iter()
            .filter_map(observe::observe)
            .collect();
        // The newest generation that is not on its way out.
        found.sort_by_key(|o| {
            (
                o.phase != crate::domain::ContainerPhase::Removing,
                o.generation,
            )
        });
        Ok(found.pop())
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        let Some((ns, name)) = names::split_container_id(container) else {
            return Ok(None);
        };
        let pod = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| error(format!("inspect {container}"), e))?;
        Ok(pod
            .filter(|p| {
                p.metadata.labels.as_ref().and_then(|l| l.get(names::NODE)) == Some(&self.kube_node)
            })
            .as_ref()
            .and_then(observe::observe))
    }

    async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(Duration::from_secs(5), self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RuntimeError::Unavailable {
                op: "ping".into(),
                message: e.to_string(),
            }),
            Err(_) => Err(RuntimeError::Unavailable {
                op: "ping".into(),
                message: "the API server did not answer within 5s".into(),
            }),
        }
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        let api = Api::<Pod>::all(self.client.clone());
        let cfg = watcher::Config::default().labels(&self.selector());
        watcher(api, cfg)
            .default_backoff()
            .map_err(|e| RuntimeError::Unavailable {
                op: "watch pods".into(),
                message: e.to_string(),
            })
            .try_filter_map(|ev| async move {
                let (pod, action) = match ev {
                    watcher::Event::Apply(p) => (p, "update"),
                    watcher::Event::Delete(p) => (p, "destroy"),
                    _ => return Ok(None),
                };
                let sliver_id = pod
                    .metadata
                    .labels
                    .and_then(|mut l| l.remove(names::SLIVER));
                Ok(Some(RuntimeChange {
                    sliver_id,
                    action: action.to_string(),
                }))
            })
            .boxed()
    }

    async fn exec(&self, container_id: &str, spec: ExecSpec) -> Result<ExecProcess> {
        access::exec(&self.client, &self.execs, container_id, spec).await
    }

    async fn resize_exec(&self, exec_id: &str, size: TermSize) -> Result<()> {
        access::resize(&self.execs, exec_id, size)
    }

    async fn wait_exec(&self, exec_id: &str) -> Result<Option<i64>> {
        access::wait(&self.execs, exec_id).await
    }

    fn logs(&self, container_id: &str, spec: LogsSpec) -> BoxStream<'static, Result<Output>> {
        access::logs(&self.client, container_id, spec)
    }

    async fn copy_in(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        copy::copy_in(&self.client, container_id, dir, tar).await
    }

    fn copy_out(&self, container_id: &str, path: &str) -> BoxStream<'static, Result<Bytes>> {
        copy::copy_out(&self.client, container_id, path)
    }

    /// The cluster pulls images itself: the reference stands for its image, and one it cannot
    /// pull shows on the sliver as "image X cannot be pulled by the cluster".
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(Some(reference.to_string()))
    }

    async fn import_image(&self, image: ImageImport) -> Result<()> {
        Err(unsupported(
            &format!("import image {}", image.reference),
            "the cluster pulls images from a registry",
        ))
    }

    async fn remove_image(&self, _id: &str) -> Result<()> {
        Err(unsupported(
            "remove image",
            "the cluster manages its own images",
        ))
    }

    async fn load_image(
        &self,
        reference: &str,
        _archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<()> {
        Err(unsupported(
            &format!("load image {reference}"),
            "the cluster pulls images from a registry",
        ))
    }
}
