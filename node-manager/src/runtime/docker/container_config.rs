//! Translates a [`SliverSpec`] into the engine's container configuration: limits, hardening,
//! ports, restart policy, labels. Pure, so the rules are visible and testable in one place.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};

use crate::domain::{RestartPolicy, SliverSpec};
use crate::runtime::hardening::SLIVER_CAPABILITIES;
use crate::runtime::labels;

/// Where ports are published when the node announces no address of this host.
pub const ANY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Process limit per sliver, against fork bombs.
pub const PIDS_LIMIT: i64 = 512;

/// Size of one log file of a sliver, and how many are kept: its log never takes more than
/// 2 x 8 MiB of the node's disk, whatever the engine's daemon.json says.
pub const LOG_MAX_SIZE: &str = "8m";
/// See [`LOG_MAX_SIZE`].
pub const LOG_MAX_FILES: &str = "2";

/// The engine configuration of a sliver's container on `node`, its ports published on
/// `host_ip` (the node's announced address, or every address when it has none), its
/// writable layer capped by the engine when `cap_disk` (the storage driver can).
pub fn container_config(
    node: &str,
    spec: &SliverSpec,
    host_ip: IpAddr,
    cap_disk: bool,
) -> ContainerCreateBody {
    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container_port);
        exposed.push(key.clone());
        bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some(host_ip.to_string()),
                host_port: Some(p.host_port.to_string()),
            }]),
        );
    }
    let restart = match spec.restart {
        RestartPolicy::Never => RestartPolicyNameEnum::NO,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
    };
    let memory = (spec.resources.memory_bytes > 0).then_some(spec.resources.memory_bytes);
    let host_config = HostConfig {
        network_mode: Some(labels::network_name(node, &spec.slice)),
        nano_cpus: (spec.resources.cpu_millis > 0).then(|| spec.resources.cpu_millis * 1_000_000),
        memory,
        // Equal to memory: no swap beyond the memory limit.
        memory_swap: memory,
        pids_limit: Some(PIDS_LIMIT),
        // Disk: capped here only where the storage driver can (see `disk`); the limit is also
        // in the `slicebed.disk` label, by which the node manager measures and acts elsewhere.
        storage_opt: (cap_disk && spec.resources.disk_bytes > 0)
            .then(|| HashMap::from([("size".to_string(), spec.resources.disk_bytes.to_string())])),
        // The log is the sliver's too: bounded per sliver, not by the host's defaults.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_string()]),
        cap_add: Some(SLIVER_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        // No binds, mounts or volumes: a sliver never sees the host, least of all the Docker socket.
        binds: None,
        mounts: None,
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        restart_policy: Some(DockerRestart {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(labels::hostname(&spec.slice, spec.index)),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels::container_labels(node, spec)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PortMapping, Resources};

    fn spec() -> SliverSpec {
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
            lease_expires_at: None,
            image_digest: String::new(),
            pull: None,
        }
    }

    #[test]
    fn limits_hardening_and_ports() {
        let c = container_config("n1", &spec(), "192.0.2.7".parse().unwrap(), false);
        let h = c.host_config.unwrap();
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.memory, Some(256 << 20));
        assert_eq!(h.memory_swap, Some(256 << 20));
        assert_eq!(h.pids_limit, Some(512));
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(h.storage_opt.is_none());
        let log = h.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-size"], LOG_MAX_SIZE);
        assert_eq!(h.network_mode.as_deref(), Some("sb-n1-web"));
        let b = &h.port_bindings.unwrap()["8080/tcp"];
        assert_eq!(b.as_ref().unwrap()[0].host_port.as_deref(), Some("30001"));
        assert_eq!(b.as_ref().unwrap()[0].host_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert_eq!(c.hostname.as_deref(), Some("web-2"));
        let l = c.labels.unwrap();
        assert_eq!(l[labels::NODE], "n1");
        assert_eq!(l[labels::GENERATION], "3");
        assert_eq!(l[labels::DISK], (1u64 << 30).to_string());
        assert_eq!(c.env, Some(vec!["A=1".to_string()]));
    }

    #[test]
    fn the_engine_caps_the_disk_only_when_asked() {
        let c = container_config("n1", &spec(), ANY_ADDRESS, true);
        let opt = c.host_config.unwrap().storage_opt.unwrap();
        assert_eq!(opt["size"], (1u64 << 30).to_string());
    }
}
