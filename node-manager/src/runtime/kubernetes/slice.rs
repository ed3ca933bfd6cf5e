//! The slice namespace of a node kept in step with its Pods: applied (namespace, quota equal to
//! the sum of the slivers' limits, limit range, isolating policy, the pull Secret of a pinned
//! image) before a Pod is created, its
//! quota shrunk after one goes, and the namespace removed with its last sliver.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde::Serialize;

use super::client::{error, is_not_found};
use super::{names, objects, observe, pod, pull_secret};
use crate::domain::{Resources, SliverSpec};
use crate::runtime::{Result, RuntimeError};

fn params() -> PatchParams {
    PatchParams::apply(names::FIELD_MANAGER).force()
}

async fn apply<K>(api: Api<K>, name: &str, obj: &K) -> Result<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    api.patch(name, &params(), &Patch::Apply(obj))
        .await
        .map_err(|e| error(format!("apply {} {name}", K::kind(&())), e))
}

/// Limits of the Pods of `ns` that quota admission counts, leaving out `except`: those not
/// ended, including those still terminating (admission counts a deleted Pod until its grace
/// period is over, so a replacement must fit beside the Pod it replaces; the quota shrinks at
/// the next change).
async fn live_pods(client: &Client, ns: &str, except: Option<&str>) -> Result<Vec<Resources>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await;
    let pods = match pods {
        Ok(l) => l.items,
        Err(e) if is_not_found(&e) => return Ok(vec![]),
        Err(e) => return Err(error(format!("list pods of {ns}"), e)),
    };
    Ok(pods
        .iter()
        .filter(|p| p.metadata.name.as_deref() != except)
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(observe::observe)
        .map(|o| o.limits)
        .collect())
}

fn totals(limits: &[Resources]) -> (Resources, Resources) {
    let mut sum = Resources::default();
    let mut max = Resources::default();
    for l in limits {
        sum = sum.plus(Resources {
            disk_bytes: 0,
            ..*l
        });
        max.cpu_millis = max.cpu_millis.max(l.cpu_millis);
        max.memory_bytes = max.memory_bytes.max(l.memory_bytes);
    }
    (sum, max)
}

/// Applies the namespace and its isolating policy (also `ensure_network`).
pub async fn ensure_namespace(client: &Client, slice: &str, node: &str) -> Result<()> {
    let ns = objects::namespace(slice, node);
    let name = ns.metadata.name.clone().unwrap_or_default();
    let stored = apply(Api::<Namespace>::all(client.clone()), &name, &ns).await?;
    if stored.metadata.deletion_timestamp.is_some() {
        return Err(RuntimeError::Engine {
            op: format!("apply namespace {name}"),
            message: format!(
                "namespace {name} is still being deleted; the sliver is created once it is gone"
            ),
        });
    }
    let pol = objects::isolation(slice, node);
    apply(
        Api::namespaced(client.clone(), &name),
        names::SLICE_OBJECT,
        &pol,
    )
    .await?;
    Ok(())
}

/// Sets the quota and limit range of the namespace to its live Pods' limits plus `adding`.
pub async fn set_quota(
    client: &Client,
    slice: &str,
    node: &str,
    except: Option<&str>,
    adding: Option<Resources>,
) -> Result<()> {
    let ns = names::namespace(slice, node);
    let mut limits = live_pods(client, &ns, except).await?;
    limits.extend(adding);
    let (sum, max) = totals(&limits);
    let q = objects::quota(slice, node, sum, limits.len());
    apply(
        Api::<ResourceQuota>::namespaced(client.clone(), &ns),
        names::SLICE_OBJECT,
        &q,
    )
    .await?;
    let lr = objects::limit_range(slice, node, max);
    apply(
        Api::<LimitRange>::namespaced(client.clone(), &ns),
        names::SLICE_OBJECT,
        &lr,
    )
    .await?;
    Ok(())
}

/// Everything a sliver needs, then its Pod; returns the Pod's container id.
pub async fn create(
    client: &Client,
    node: &str,
    spec: &SliverSpec,
    host_ip: Option<std::net::IpAddr>,
) -> Result<String> {
    ensure_namespace(client, &spec.slice, node).await?;
    let ns = names::namespace(&spec.slice, node);
    let pod_name = names::pod_name(spec);
    set_quota(
        client,
        &spec.slice,
        node,
        Some(&pod_name),
        Some(spec.resources),
    )
    .await?;
    if let Some(p) = objects::published(node, spec) {
        let n = names::published_policy(&spec.sliver_id);
        apply(
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns),
            &n,
            &p,
        )
        .await?;
    }
    if let Some(s) = pull_secret::secret(node, spec) {
        // Applied with each Pod, so a Pod made after a renewal carries the renewed credential.
        apply(
            Api::<Secret>::namespaced(client.clone(), &ns),
            pull_secret::NAME,
            &s,
        )
        .await?;
    }
    let p = pod::pod(node, spec, host_ip, SystemTime::now());
    apply(Api::<Pod>::namespaced(client.clone(), &ns), &pod_name, &p).await?;
    Ok(names::container_id(&ns, &pod_name))
}

/// Deletes the Pod (absent is fine) and its port policy, and shrinks the quota. The namespace
/// stays: a replacement (new generation, renewed lease) goes on in it, and the reconciler
/// removes it with `remove_network` once the node runs nothing of the slice.
pub async fn delete(client: &Client, node: &str, container_id: &str) -> Result<()> {
    let Some((ns, name)) = names::split_container_id(container_id) else {
        return Ok(());
    };
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let found = pods
        .get_opt(name)
        .await
        .map_err(|e| error(format!("get pod {container_id}"), e))?;
    let Some(found) = found else {
        return Ok(());
    };
    let labels = found.metadata.labels.clone().unwrap_or_default();
    if labels.get(names::NODE).map(String::as_str) != Some(node) {
        return Ok(()); // not this node's: never touched
    }
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(error(format!("delete pod {container_id}"), e)),
    }
    if let Some(sliver) = labels.get(names::SLIVER) {
        let pol = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
        match pol
            .delete(&names::published_policy(sliver), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(error(format!("delete port policy of {sliver}"), e)),
        }
    }
    let slice = labels.get(names::SLICE).cloned().unwrap_or_default();
    set_quota(client, &slice, node, Some(name), None).await
}

/// Deletes a namespace (absent is fine); the cluster removes what is left in it.
pub async fn delete_namespace(client: &Client, ns: &str) -> Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(error(format!("delete namespace {ns}"), e)),
    }
}
