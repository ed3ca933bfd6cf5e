//! A sliver's Pod: pinned to its node by a `kubernetes.io/hostname` nodeSelector (so a cordoned
//! node takes no new sliver, which `spec.nodeName` would bypass), requests equal to limits
//! (Guaranteed QoS), the Docker backend's hardening (capabilities dropped to the same small
//! set, no privilege escalation, RuntimeDefault seccomp, no host namespaces or paths, no
//! service account token), the lease as `activeDeadlineSeconds`, and published ports as
//! hostPorts. A pinned image is pulled by digest from the service's registry with the slice
//! namespace's pull Secret (`pull_secret.rs`). Pure: the rules are visible and tested in one
//! place.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Capabilities as KubeCapabilities, Container, ContainerPort, EnvVar, LocalObjectReference, Pod,
    PodSpec, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{names, objects, pull_secret};
use crate::domain::{RestartPolicy, SliverSpec};
use crate::runtime::hardening::SLIVER_CAPABILITIES;
use crate::runtime::labels;

/// Seconds from `now` to the lease end, at least 1 (Kubernetes refuses 0): the cluster ends
/// the Pod then even if no agent is left to do it.
pub fn deadline_seconds(end: SystemTime, now: SystemTime) -> i64 {
    let secs = end
        .duration_since(now)
        .map_or(0, |d| d.as_secs_f64().ceil() as i64);
    secs.max(1)
}

/// A port name Kubernetes accepts (IANA service name: 15 characters, lowercase letters,
/// digits and inner dashes, one letter at least); others are published unnamed.
fn port_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    ok.then(|| name.to_string())
}

/// The Pod of `spec` on Kubernetes node `node`, its ports published on `host_ip` when known.
pub fn pod(node: &str, spec: &SliverSpec, host_ip: Option<IpAddr>, now: SystemTime) -> Pod {
    let mut limits: BTreeMap<String, Quantity> = objects::quantities(spec.resources);
    let requests = limits.clone();
    if spec.resources.disk_bytes > 0 {
        // The kubelet evicts a Pod writing past it; not counted in the quota (see docs).
        limits.insert(
            "ephemeral-storage".to_string(),
            Quantity(spec.resources.disk_bytes.to_string()),
        );
    }
    let ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: port_name(&p.name),
            container_port: i32::from(p.container_port),
            host_port: Some(i32::from(p.host_port)),
            host_ip: host_ip.map(|ip| ip.to_string()),
            protocol: Some("TCP".to_string()),
        })
        .collect();
    let pulled = pull_secret::image(spec);
    let container = Container {
        name: names::CONTAINER.to_string(),
        image: Some(pulled.clone().unwrap_or_else(|| spec.image.clone())),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(
            spec.env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    value_from: None,
                })
                .collect(),
        ),
        ports: (!ports.is_empty()).then_some(ports),
        resources: Some(ResourceRequirements {
            limits: Some(limits),
            requests: Some(requests),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(KubeCapabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: Some(SLIVER_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let restart = match spec.restart {
        RestartPolicy::Never => "Never",
        RestartPolicy::OnFailure => "OnFailure",
        RestartPolicy::Always => "Always",
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(names::pod_name(spec)),
            namespace: Some(names::namespace(&spec.slice, node)),
            labels: Some(names::pod_labels(node, spec)),
            annotations: names::lease_end_secs(spec)
                .map(|end| BTreeMap::from([(names::LEASE_END.to_string(), end.to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            node_selector: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                node.to_string(),
            )])),
            restart_policy: Some(restart.to_string()),
            hostname: Some(labels::hostname(&spec.slice, spec.index)),
            active_deadline_seconds: spec.lease_expires_at.map(|end| deadline_seconds(end, now)),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            image_pull_secrets: pulled.map(|_| {
                vec![LocalObjectReference {
                    name: pull_secret::NAME.to_string(),
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{PortMapping, Resources};

    pub(crate) fn spec() -> SliverSpec {
        SliverSpec {
            sliver_id: "s1".into(),
            slice: "web".into(),
            index: 2,
            image: "slicebed/base:latest".into(),
            command: vec!["sh".into(), "-c".into(), "sleep 1000".into()],
            env: [("A".to_string(), "1".to_string())].into(),
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 256 << 20,
                disk_bytes: 1 << 30,
            },
            ports: vec![PortMapping {
                name: "http".into(),
                container_port: 8080,
                host_port: 30001,
            }],
            restart: RestartPolicy::Always,
            generation: 3,
            lease_expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)),
            image_digest: String::new(),
            pull: None,
        }
    }

    #[test]
    fn pinned_guaranteed_hardened_and_bounded_by_the_lease() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(400);
        let p = pod("k1", &spec(), "192.0.2.7".parse().ok(), now);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["name"], "sb-s1-g3-l1000");
        assert_eq!(v["metadata"]["annotations"][names::LEASE_END], "1000");
        assert_eq!(v["metadata"]["namespace"], "sb-web-k1");
        let l = &v["metadata"]["labels"];
        assert_eq!(l[names::SLIVER], "s1");
        assert_eq!(l[names::GENERATION], "3");
        assert_eq!(l[names::INDEX], "2");
        assert_eq!(l[names::NODE], "k1");
        let s = &v["spec"];
        assert_eq!(s["nodeSelector"]["kubernetes.io/hostname"], "k1");
        assert!(s.get("nodeName").is_none());
        assert_eq!(s["activeDeadlineSeconds"], 600);
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["hostNetwork"], false);
        assert_eq!(s["automountServiceAccountToken"], false);
        assert!(s.get("volumes").is_none());
        let c = &s["containers"][0];
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(c["resources"]["requests"]["cpu"], "500m");
        assert_eq!(
            c["resources"]["requests"]["memory"],
            (256 << 20).to_string()
        );
        assert_eq!(
            c["resources"]["limits"]["ephemeral-storage"],
            (1u64 << 30).to_string()
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(sc["capabilities"]["add"].as_array().unwrap().len(), 7);
        assert_eq!(c["ports"][0]["hostPort"], 30001);
        assert_eq!(c["ports"][0]["hostIP"], "192.0.2.7");
        assert_eq!(c["ports"][0]["name"], "http");
        assert_eq!(c["env"][0], serde_json::json!({"name": "A", "value": "1"}));
        assert_eq!(c["command"][2], "sleep 1000");
    }

    #[test]
    fn an_ended_lease_still_gives_a_valid_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5000);
        assert_eq!(deadline_seconds(SystemTime::UNIX_EPOCH, now), 1);
        assert_eq!(port_name("Web_UI"), None);
        assert_eq!(port_name("http-2"), Some("http-2".into()));
    }
}
