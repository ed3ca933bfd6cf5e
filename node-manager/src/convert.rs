//! Translation between the wire contract (`slicebed_proto::v1`) and the domain types.
//! The only module besides `agent`/`enroll` that sees proto types.

use std::time::SystemTime;

use slicebed_proto::v1 as pb;

use crate::domain::{
    PortMapping, PortRange, PullAccess, ReportedState, Resources, RestartPolicy, SliverReport,
    SliverSpec,
};

/// The engine's health for `Hello` and heartbeats; `None` (unset) while it answers.
pub fn engine_status(h: &crate::engine_health::EngineHealth) -> Option<pb::EngineStatus> {
    h.as_ref().map(|d| pb::EngineStatus {
        unavailable: true,
        message: d.message.clone(),
        since: Some(d.since.into()),
    })
}

/// Resources on the wire. Functions, not `From`: both types live in other crates.
pub fn resources_to_pb(r: Resources) -> pb::Resources {
    pb::Resources {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
        disk_bytes: r.disk_bytes,
    }
}

/// Resources from the wire.
pub fn resources_from_pb(r: pb::Resources) -> Resources {
    Resources {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
        disk_bytes: r.disk_bytes,
    }
}

impl From<PortRange> for pb::PortRange {
    fn from(r: PortRange) -> Self {
        pb::PortRange {
            first: r.first.into(),
            last: r.last.into(),
        }
    }
}

fn port(p: u32, what: &str, sliver: &str) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("sliver {sliver}: {what} {p} is not a valid port"))
}

/// The wire's restart policy as the domain's: the one place the two meet. Unset is the
/// contract's default (`types.proto`: "UNSPECIFIED: treated as ON_FAILURE"); a value this node
/// does not know (a newer service) is refused rather than guessed, so a sliver never runs
/// under a policy nobody asked for.
pub fn restart_from(wire: i32, sliver: &str) -> Result<RestartPolicy, String> {
    match pb::RestartPolicy::try_from(wire) {
        Ok(pb::RestartPolicy::Unspecified | pb::RestartPolicy::OnFailure) => {
            Ok(RestartPolicy::OnFailure)
        }
        Ok(pb::RestartPolicy::Never) => Ok(RestartPolicy::Never),
        Ok(pb::RestartPolicy::Always) => Ok(RestartPolicy::Always),
        Err(_) => Err(format!(
            "sliver {sliver}: restart policy {wire} is unknown to this node manager (version {})",
            crate::AGENT_VERSION
        )),
    }
}

/// A desired sliver as a domain spec; an error names what is invalid.
pub fn spec_from(d: pb::DesiredSliver) -> Result<SliverSpec, String> {
    let restart = restart_from(d.restart_policy, &d.sliver_id)?;
    let ports = d
        .ports
        .iter()
        .map(|p| {
            Ok(PortMapping {
                name: p.name.clone(),
                container_port: port(p.container_port, "container port", &d.sliver_id)?,
                host_port: port(p.host_port, "host port", &d.sliver_id)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if d.sliver_id.is_empty() || d.slice.is_empty() || d.image.is_empty() {
        return Err(format!(
            "sliver {:?}: id, slice and image are required",
            d.sliver_id
        ));
    }
    Ok(SliverSpec {
        sliver_id: d.sliver_id,
        slice: d.slice,
        index: d.index,
        image: d.image,
        command: d.command,
        env: d.env.into_iter().collect(),
        resources: d.resources.map(resources_from_pb).unwrap_or_default(),
        ports,
        restart,
        generation: d.generation,
        lease_expires_at: d
            .lease_expires_at
            .and_then(|t| SystemTime::try_from(t).ok()),
        image_digest: d.image_digest,
        pull: d.pull_access.map(|p| PullAccess {
            registry: p.registry,
            repository: p.repository,
            username: p.username,
            password: p.password,
            expires_at: p.expires_at.and_then(|t| SystemTime::try_from(t).ok()),
        }),
    })
}

/// A report as the wire's `SliverStatus`, stamped now.
pub fn status_from(r: SliverReport) -> pb::SliverStatus {
    let state = match r.state {
        ReportedState::Creating => pb::SliverState::Creating,
        ReportedState::Running => pb::SliverState::Running,
        ReportedState::Exited => pb::SliverState::Exited,
        ReportedState::Failed => pb::SliverState::Failed,
        ReportedState::Suspended => pb::SliverState::Suspended,
        ReportedState::Deleted => pb::SliverState::Deleted,
    };
    pb::SliverStatus {
        sliver_id: r.sliver_id,
        state: state.into(),
        message: r.message,
        exit_code: r.exit_code,
        container_id: r.container_id,
        observed_at: Some(SystemTime::now().into()),
        restarts: r.restarts,
    }
}

/// A sliver's measured usage as the heartbeat's `SliverSample`, taken at `at`.
pub fn sample_to_pb(
    sliver_id: String,
    u: crate::usage::SliverUsage,
    at: SystemTime,
) -> pb::SliverSample {
    pb::SliverSample {
        sliver_id,
        cpu_millis: u.cpu_millis,
        memory_bytes: u.memory_bytes,
        disk_bytes: u.disk_bytes,
        net_rx_bytes_per_second: u.net_rx_bps,
        net_tx_bytes_per_second: u.net_tx_bps,
        sampled_at: Some(at.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_sliver_to_spec() {
        let d = pb::DesiredSliver {
            sliver_id: "s1".into(),
            slice: "web".into(),
            index: 1,
            image: "slicebed/base:latest".into(),
            ports: vec![pb::AssignedPort {
                name: "http".into(),
                container_port: 80,
                host_port: 30000,
            }],
            restart_policy: pb::RestartPolicy::Never.into(),
            generation: 7,
            ..Default::default()
        };
        let s = spec_from(d.clone()).unwrap();
        assert_eq!(
            (s.restart, s.generation, s.ports[0].host_port),
            (RestartPolicy::Never, 7, 30000)
        );
        let mut bad = d;
        bad.ports[0].host_port = 70000;
        assert!(spec_from(bad).unwrap_err().contains("70000"));
        let unspecified = pb::DesiredSliver {
            sliver_id: "x".into(),
            slice: "s".into(),
            image: "i".into(),
            ..Default::default()
        };
        assert_eq!(
            spec_from(unspecified).unwrap().restart,
            RestartPolicy::OnFailure
        );
    }

    #[test]
    fn every_restart_policy_converts_and_an_unknown_one_is_refused() {
        for (wire, want) in [
            (pb::RestartPolicy::Unspecified, RestartPolicy::OnFailure),
            (pb::RestartPolicy::Never, RestartPolicy::Never),
            (pb::RestartPolicy::OnFailure, RestartPolicy::OnFailure),
            (pb::RestartPolicy::Always, RestartPolicy::Always),
        ] {
            assert_eq!(restart_from(wire.into(), "s1"), Ok(want), "{wire:?}");
        }
        let d = pb::DesiredSliver {
            sliver_id: "s1".into(),
            slice: "web".into(),
            image: "i".into(),
            restart_policy: 42,
            ..Default::default()
        };
        let err = spec_from(d).unwrap_err();
        assert!(
            err.contains("s1") && err.contains("restart policy 42"),
            "{err}"
        );
    }
}
