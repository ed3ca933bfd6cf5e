//! The namespace-level objects of a slice on one Kubernetes node: the Namespace, a
//! ResourceQuota equal to the sum of that node's slivers of the slice, a LimitRange, and the
//! NetworkPolicies that stand in for Docker's per-slice bridge. Pure builders, no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names;
use crate::domain::{Resources, SliverSpec};

fn meta(name: &str, namespace: Option<&str>, slice: &str, node: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(names::namespace_labels(slice, node)),
        ..Default::default()
    }
}

/// Kubernetes quantities of cpu (millicores) and memory (bytes); zero means "not limited" and
/// is left out.
pub fn quantities(r: Resources) -> BTreeMap<String, Quantity> {
    let mut q = BTreeMap::new();
    if r.cpu_millis > 0 {
        q.insert("cpu".to_string(), Quantity(format!("{}m", r.cpu_millis)));
    }
    if r.memory_bytes > 0 {
        q.insert("memory".to_string(), Quantity(r.memory_bytes.to_string()));
    }
    q
}

/// The slice's namespace on `node`.
pub fn namespace(slice: &str, node: &str) -> Namespace {
    Namespace {
        metadata: meta(&names::namespace(slice, node), None, slice, node),
        ..Default::default()
    }
}

/// The quota of the namespace: `total` is the sum of the limits of the slice's Pods on the
/// node, the new one included. Requests equal limits, so both are capped at the same figure.
pub fn quota(slice: &str, node: &str, total: Resources, pods: usize) -> ResourceQuota {
    let ns = names::namespace(slice, node);
    let mut hard = BTreeMap::from([("pods".to_string(), Quantity(pods.to_string()))]);
    for (k, v) in quantities(total) {
        hard.insert(format!("requests.{k}"), v.clone());
        hard.insert(format!("limits.{k}"), v);
    }
    ResourceQuota {
        metadata: meta(names::SLICE_OBJECT, Some(&ns), slice, node),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A LimitRange capping every container of the namespace at `max` (the largest sliver), and
/// giving anything created without limits that much rather than nothing.
pub fn limit_range(slice: &str, node: &str, max: Resources) -> LimitRange {
    let ns = names::namespace(slice, node);
    let q = quantities(max);
    LimitRange {
        metadata: meta(names::SLICE_OBJECT, Some(&ns), slice, node),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_string(),
                max: Some(q.clone()),
                default: Some(q.clone()),
                default_request: Some(q),
                ..Default::default()
            }],
        }),
    }
}

/// Ingress into the namespace only from Pods of the same slice (this namespace or the slice's
/// namespaces on other nodes); everything else is refused, as between Docker slice bridges.
pub fn isolation(slice: &str, node: &str) -> NetworkPolicy {
    let ns = names::namespace(slice, node);
    let same_slice = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            names::SLICE.to_string(),
            slice.to_string(),
        )])),
        ..Default::default()
    };
    NetworkPolicy {
        metadata: meta(names::SLICE_OBJECT, Some(&ns), slice, node),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector::default()),
                        ..Default::default()
                    },
                    NetworkPolicyPeer {
                        namespace_selector: Some(same_slice),
                        ..Default::default()
                    },
                ]),
                ports: None,
            }]),
            ..Default::default()
        }),
    }
}

/// Ingress from anywhere to the sliver's published ports; `None` when it publishes none.
pub fn published(node: &str, spec: &SliverSpec) -> Option<NetworkPolicy> {
    if spec.ports.is_empty() {
        return None;
    }
    let ns = names::namespace(&spec.slice, node);
    let mut m = meta(
        &names::published_policy(&spec.sliver_id),
        Some(&ns),
        &spec.slice,
        node,
    );
    m.labels
        .get_or_insert_with(Default::default)
        .insert(names::SLIVER.to_string(), spec.sliver_id.clone());
    let ports = spec
        .ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(p.container_port))),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        })
        .collect();
    Some(NetworkPolicy {
        metadata: m,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    names::SLIVER.to_string(),
                    spec.sliver_id.clone(),
                )])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(ports),
            }]),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_the_sum_and_policies_isolate_the_slice() {
        let r = Resources {
            cpu_millis: 1500,
            memory_bytes: 3 << 28,
            disk_bytes: 0,
        };
        let q = quota("web", "k1", r, 3);
        assert_eq!(q.metadata.namespace.as_deref(), Some("sb-web-k1"));
        let hard = q.spec.unwrap().hard.unwrap();
        assert_eq!(hard["pods"].0, "3");
        assert_eq!(hard["requests.cpu"].0, "1500m");
        assert_eq!(hard["limits.cpu"].0, "1500m");
        assert_eq!(hard["limits.memory"].0, (3i64 << 28).to_string());
        let ns = namespace("web", "k1");
        assert_eq!(ns.metadata.labels.unwrap()[names::SLICE], "web");
        let p = serde_json::to_value(isolation("web", "k1")).unwrap();
        assert_eq!(p["spec"]["podSelector"], serde_json::json!({}));
        assert_eq!(p["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        let from = &p["spec"]["ingress"][0]["from"];
        assert_eq!(from[0], serde_json::json!({"podSelector": {}}));
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"][names::SLICE],
            "web"
        );
        assert!(p["spec"].get("egress").is_none());
    }
}
