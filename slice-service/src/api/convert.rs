//! Conversions between proto messages and domain types.

use std::time::Duration;

use prost_types::Timestamp;
use slicebed_proto::v1 as pb;

use crate::core::{NodeView, SliceStatus, SliceView, SliverView};
use crate::error::{Error, Result};
use crate::model::{
    self, Millis, NodeLossPolicy, NodeState, PlacementStrategy, RestartPolicy, Role,
};
use crate::state::SliverState;
use slicebed_units::Resources;

pub fn ts(ms: Millis) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

pub fn ts_opt(ms: Option<Millis>) -> Option<Timestamp> {
    ms.and_then(ts)
}

/// A proto duration as a std one; negative is an error naming `field`.
pub fn duration(field: &str, d: Option<prost_types::Duration>) -> Result<Option<Duration>> {
    match d {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            Err(Error::invalid(format!("{field} must not be negative")))
        }
        Some(d) if d.nanos >= 1_000_000_000 => Err(Error::invalid(format!(
            "{field} has {} nanoseconds; at most 999999999",
            d.nanos
        ))),
        // Checked here at the edge so no later arithmetic sees it: i64::MAX seconds once
        // wrapped a drain deadline into the past.
        Some(d) if d.seconds as u64 > crate::core::MAX_DURATION.as_secs() => {
            Err(Error::invalid(format!(
                "{field} of {}s is too long (at most {} days)",
                d.seconds,
                crate::core::MAX_DURATION.as_secs() / 86_400
            )))
        }
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
    }
}

pub fn pb_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn res(r: Resources) -> pb::Resources {
    pb::Resources {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
        disk_bytes: r.disk_bytes,
    }
}

pub fn res_in(r: Option<pb::Resources>) -> Resources {
    r.map(|r| Resources::new(r.cpu_millis, r.memory_bytes, r.disk_bytes))
        .unwrap_or_default()
}

pub fn role_in(r: i32) -> Result<Role> {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Pi) => Ok(Role::Pi),
        Ok(pb::Role::User) => Ok(Role::User),
        // The contract says UNSPECIFIED is never sent: a client that omits the role must say
        // which one it means rather than get the least privileged by accident.
        Ok(pb::Role::Unspecified) => Err(Error::invalid(
            "role: required (ROLE_ADMIN, ROLE_PI or ROLE_USER)".to_string(),
        )),
        Err(_) => Err(Error::invalid(format!("role: unknown value {r}"))),
    }
}

pub fn role(r: Role) -> pb::Role {
    match r {
        Role::Admin => pb::Role::Admin,
        Role::Pi => pb::Role::Pi,
        Role::User => pb::Role::User,
    }
}

pub fn sliver_state(s: SliverState) -> pb::SliverState {
    match s {
        SliverState::Pending => pb::SliverState::Pending,
        SliverState::Creating => pb::SliverState::Creating,
        SliverState::Running => pb::SliverState::Running,
        SliverState::Exited => pb::SliverState::Exited,
        SliverState::Failed => pb::SliverState::Failed,
        SliverState::Stopping => pb::SliverState::Stopping,
        SliverState::Deleted => pb::SliverState::Deleted,
        SliverState::Suspended => pb::SliverState::Suspended,
    }
}

/// A state reported by a node; `None` for states a node may not report.
pub fn observed_state(s: i32) -> Option<SliverState> {
    match pb::SliverState::try_from(s).ok()? {
        pb::SliverState::Creating => Some(SliverState::Creating),
        pb::SliverState::Running => Some(SliverState::Running),
        pb::SliverState::Exited => Some(SliverState::Exited),
        pb::SliverState::Failed => Some(SliverState::Failed),
        pb::SliverState::Suspended => Some(SliverState::Suspended),
        pb::SliverState::Deleted => Some(SliverState::Deleted),
        _ => None,
    }
}

pub fn node_state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Enrolling => pb::NodeState::Enrolling,
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Unreachable => pb::NodeState::Unreachable,
        NodeState::Draining => pb::NodeState::Draining,
        NodeState::Disabled => pb::NodeState::Disabled,
        NodeState::EngineDown => pb::NodeState::EngineDown,
    }
}

/// A request's enum field holding a number the contract does not define.
fn unknown(field: &str, value: i32) -> Error {
    Error::invalid(format!("{field}: unknown value {value}"))
}

/// A request's restart policy; `field` names it in errors.
pub fn restart_in(field: &str, r: i32) -> Result<RestartPolicy> {
    match pb::RestartPolicy::try_from(r) {
        // The contract: RESTART_POLICY_UNSPECIFIED is "treated as ON_FAILURE".
        Ok(pb::RestartPolicy::Unspecified) => Ok(RestartPolicy::OnFailure),
        Ok(pb::RestartPolicy::Never) => Ok(RestartPolicy::Never),
        Ok(pb::RestartPolicy::OnFailure) => Ok(RestartPolicy::OnFailure),
        Ok(pb::RestartPolicy::Always) => Ok(RestartPolicy::Always),
        Err(_) => Err(unknown(field, r)),
    }
}

pub fn restart(r: RestartPolicy) -> pb::RestartPolicy {
    match r {
        RestartPolicy::Never => pb::RestartPolicy::Never,
        RestartPolicy::OnFailure => pb::RestartPolicy::OnFailure,
        RestartPolicy::Always => pb::RestartPolicy::Always,
    }
}

/// A request's placement strategy; `field` names it in errors.
pub fn strategy_in(field: &str, s: i32) -> Result<PlacementStrategy> {
    match pb::PlacementStrategy::try_from(s) {
        // The contract: PLACEMENT_STRATEGY_UNSPECIFIED is "treated as SPREAD".
        Ok(pb::PlacementStrategy::Unspecified) => Ok(PlacementStrategy::Spread),
        Ok(pb::PlacementStrategy::Spread) => Ok(PlacementStrategy::Spread),
        Ok(pb::PlacementStrategy::Pack) => Ok(PlacementStrategy::Pack),
        Err(_) => Err(unknown(field, s)),
    }
}

pub fn strategy(s: PlacementStrategy) -> pb::PlacementStrategy {
    match s {
        PlacementStrategy::Spread => pb::PlacementStrategy::Spread,
        PlacementStrategy::Pack => pb::PlacementStrategy::Pack,
    }
}

/// A request's node-loss policy; `field` names it in errors.
pub fn node_loss_in(field: &str, p: i32) -> Result<NodeLossPolicy> {
    match pb::NodeLossPolicy::try_from(p) {
        // The contract: NODE_LOSS_POLICY_UNSPECIFIED is "treated as KEEP".
        Ok(pb::NodeLossPolicy::Unspecified) => Ok(NodeLossPolicy::Keep),
        Ok(pb::NodeLossPolicy::Keep) => Ok(NodeLossPolicy::Keep),
        Ok(pb::NodeLossPolicy::Replace) => Ok(NodeLossPolicy::Replace),
        Err(_) => Err(unknown(field, p)),
    }
}

pub fn node_loss(p: NodeLossPolicy) -> pb::NodeLossPolicy {
    match p {
        NodeLossPolicy::Keep => pb::NodeLossPolicy::Keep,
        NodeLossPolicy::Replace => pb::NodeLossPolicy::Replace,
    }
}

pub fn site(s: &model::Site) -> pb::Site {
    pb::Site {
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        city: s.city.clone(),
        country: s.country.clone(),
        latitude: s.latitude,
        longitude: s.longitude,
        enabled: s.enabled,
        quota: Some(pb::Quota {
            max_slices: s.max_slices as u32,
            max_slivers: s.max_slivers as u32,
        }),
        created_at: ts(s.created_at),
        // Filled by the handlers that answer with a site (api/images.rs).
        images: None,
    }
}

pub fn user(u: &model::User) -> pb::User {
    pb::User {
        name: u.name.clone(),
        role: role(u.role) as i32,
        site: u.site.clone().unwrap_or_default(),
        created_at: ts(u.created_at),
    }
}

pub fn token(t: &model::Token) -> pb::TokenInfo {
    pb::TokenInfo {
        id: t.id.clone(),
        user: t.subject.clone(),
        description: t.description.clone(),
        created_at: ts(t.created_at),
        expires_at: ts_opt(t.expires_at),
        revoked: t.revoked,
        parent_id: t.parent_id.clone().unwrap_or_default(),
    }
}

pub fn node(v: &NodeView) -> pb::Node {
    let n = &v.node;
    pb::Node {
        name: n.name.clone(),
        site: n.site.clone(),
        address: n.address.clone(),
        capacity: Some(res(n.capacity)),
        allocated: Some(res(v.allocated)),
        usage: Some(res(v.usage)),
        port_range: Some(pb::PortRange {
            first: n.port_first,
            last: n.port_last,
        }),
        labels: n.labels.clone().into_iter().collect(),
        state: node_state(v.state) as i32,
        last_heartbeat: ts_opt(n.last_heartbeat),
        agent_version: n.agent_version.clone(),
        slivers: v.slivers,
        created_at: ts(n.created_at),
        drain_deadline: ts_opt(n.drain_deadline),
        engine: v.engine_down.as_ref().map(|d| pb::EngineStatus {
            unavailable: true,
            message: d.message.clone(),
            since: ts(d.since_ms),
        }),
        cluster: n.cluster.clone().unwrap_or_default(),
        cluster_revoked: v.cluster_revoked,
    }
}

fn ports(p: &[model::AssignedPort]) -> Vec<pb::AssignedPort> {
    p.iter()
        .map(|p| pb::AssignedPort {
            name: p.name.clone(),
            container_port: p.container_port,
            host_port: p.host_port,
        })
        .collect()
}

pub fn sliver(v: &SliverView) -> pb::Sliver {
    let s = &v.sliver;
    let state = if v.unknown {
        pb::SliverState::Unknown
    } else {
        sliver_state(s.state)
    };
    pb::Sliver {
        id: s.id.clone(),
        slice: s.slice.clone(),
        index: s.index,
        node: s.node.clone(),
        site: s.site.clone(),
        state: state as i32,
        resources: Some(res(s.resources)),
        ports: ports(&s.ports),
        last_error: s.last_error.clone(),
        exit_code: s.exit_code,
        created_at: ts(s.created_at),
        updated_at: ts(s.updated_at),
        node_address: v.node_address.clone(),
    }
}

pub fn placement(p: &model::Placement) -> pb::PlacementRequest {
    pb::PlacementRequest {
        strategy: strategy(p.strategy) as i32,
        slivers: p.slivers,
        per_site: p.per_site,
        sites: p.sites.clone(),
        node_labels: p.node_labels.clone().into_iter().collect(),
        best_effort: p.best_effort,
    }
}

/// A request's placement; an absent one is all defaults (and then fails validation: no count).
pub fn placement_in(p: Option<pb::PlacementRequest>) -> Result<model::Placement> {
    let p = p.unwrap_or_default();
    Ok(model::Placement {
        strategy: strategy_in("placement.strategy", p.strategy)?,
        slivers: p.slivers,
        per_site: p.per_site,
        sites: p.sites,
        node_labels: p.node_labels.into_iter().collect(),
        best_effort: p.best_effort,
    })
}

/// A create request in domain terms: policies and durations checked here, the rest by
/// `SliceSpec::validate` in the core.
pub fn slice_spec_in(r: pb::CreateSliceRequest) -> Result<crate::core::SliceSpec> {
    Ok(crate::core::SliceSpec {
        name: r.name,
        description: r.description,
        image: r.image,
        image_digest: String::new(),
        command: r.command,
        env: r.env.into_iter().collect(),
        resources: res_in(r.resources),
        ports: r
            .ports
            .into_iter()
            .map(|p| model::NamedPort {
                name: p.name,
                container_port: p.container_port,
            })
            .collect(),
        placement: placement_in(r.placement)?,
        lease: duration("lease", r.lease)?,
        members: r.members,
        restart_policy: restart_in("restart_policy", r.restart_policy)?,
        node_loss: node_loss_in("node_loss", r.node_loss)?,
        replace_after: duration("replace_after", r.replace_after)?,
    })
}

pub fn slice(v: &SliceView) -> pb::Slice {
    let s = &v.slice;
    let state = match v.status() {
        SliceStatus::Provisioning => pb::SliceState::Provisioning,
        SliceStatus::Ready => pb::SliceState::Ready,
        SliceStatus::Degraded => pb::SliceState::Degraded,
        SliceStatus::Deleted => pb::SliceState::Deleted,
        SliceStatus::Expired => pb::SliceState::Expired,
    };
    pb::Slice {
        name: s.name.clone(),
        owner: s.owner.clone(),
        members: s.members.clone(),
        description: s.description.clone(),
        site: s.site.clone(),
        image: s.image.clone(),
        command: s.command.clone(),
        env: s.env.clone().into_iter().collect(),
        resources: Some(res(s.resources)),
        ports: s
            .ports
            .iter()
            .map(|p| pb::NamedPort {
                name: p.name.clone(),
                container_port: p.container_port,
            })
            .collect(),
        placement: Some(placement(&s.placement)),
        created_at: ts(s.created_at),
        lease_expires_at: ts(s.lease_expires_at),
        state: state as i32,
        slivers: v.slivers.iter().map(sliver).collect(),
        restart_policy: restart(s.restart_policy) as i32,
        node_loss: node_loss(s.node_loss) as i32,
        replace_after: Some(pb_duration(Duration::from_millis(
            s.replace_after_ms.max(0) as u64,
        ))),
        image_digest: s.image_digest.clone(),
    }
}

/// What a node must run for one sliver; with a pull credential for its pinned image when
/// the service serves a registry (`pull`), which Kubernetes sites pull it with.
pub fn desired(
    s: &model::Slice,
    v: &model::Sliver,
    pull: Option<&crate::images::pull::PullIssuer>,
) -> pb::DesiredSliver {
    pb::DesiredSliver {
        sliver_id: v.id.clone(),
        slice: s.name.clone(),
        index: v.index,
        image: s.image.clone(),
        command: s.command.clone(),
        env: s.env.clone().into_iter().collect(),
        resources: Some(res(v.resources)),
        ports: ports(&v.ports),
        restart_policy: restart(s.restart_policy) as i32,
        generation: v.generation as u64,
        lease_expires_at: ts(s.lease_expires_at),
        image_digest: s.image_digest.clone(),
        pull_access: pull.and_then(|p| pull_access(s, p)),
    }
}

/// The pull credential of a pinned slice, valid until its lease ends.
fn pull_access(s: &model::Slice, p: &crate::images::pull::PullIssuer) -> Option<pb::PullAccess> {
    if s.image_digest.is_empty() {
        return None;
    }
    let repository = slicebed_image::Reference::parse(&s.image).ok()?.name;
    Some(pb::PullAccess {
        registry: p.registry().to_string(),
        repository,
        username: crate::images::pull::USERNAME.to_string(),
        password: p.mint(&s.id, s.lease_expires_at),
        expires_at: ts(s.lease_expires_at),
    })
}

pub fn event(e: &model::Event) -> pb::Event {
    pb::Event {
        id: e.id,
        time: ts(e.time),
        actor: e.actor.clone(),
        object: e.object.clone(),
        action: e.action.clone(),
        detail: e.detail.clone(),
    }
}

/// What a node needs to open a session.
pub fn open_session(r: &crate::hub::SessionRequest) -> pb::OpenSession {
    use crate::hub::SessionKind;
    use pb::open_session::Kind;
    let kind = match &r.kind {
        SessionKind::Exec {
            command,
            tty,
            cols,
            rows,
            env,
            stdin,
        } => Kind::Exec(pb::ExecStart {
            sliver: None,
            command: command.clone(),
            tty: *tty,
            size: Some(pb::TerminalSize {
                cols: *cols,
                rows: *rows,
            }),
            env: env.iter().cloned().collect(),
            stdin: *stdin,
        }),
        SessionKind::Logs { follow, tail } => Kind::Logs(pb::LogsRequest {
            sliver: None,
            follow: *follow,
            tail: *tail,
        }),
        SessionKind::CopyTo(p) => Kind::CopyTo(p.clone()),
        SessionKind::CopyFrom(p) => Kind::CopyFrom(p.clone()),
    };
    pb::OpenSession {
        session_id: r.session_id.clone(),
        sliver_id: r.sliver_id.clone(),
        kind: Some(kind),
        idle_timeout: Some(pb_duration(r.idle_timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_policies_take_the_documented_defaults() {
        assert_eq!(
            restart_in("restart_policy", 0).unwrap(),
            RestartPolicy::OnFailure
        );
        assert_eq!(
            strategy_in("placement.strategy", 0).unwrap(),
            PlacementStrategy::Spread
        );
        assert_eq!(node_loss_in("node_loss", 0).unwrap(), NodeLossPolicy::Keep);
        assert_eq!(
            restart_in("restart_policy", pb::RestartPolicy::Never as i32).unwrap(),
            RestartPolicy::Never
        );
    }

    #[test]
    fn absurd_durations_are_refused_naming_the_field() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        for (v, want) in [
            (
                d(i64::MAX, 0),
                "deadline of 9223372036854775807s is too long",
            ),
            (d(5, 1_000_000_000), "deadline has 1000000000 nanoseconds"),
            (d(-1, 0), "deadline must not be negative"),
        ] {
            let e = duration("deadline", v).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e:?}");
            assert!(e.to_string().starts_with(want), "{e}");
        }
        assert_eq!(
            duration("ttl", d(86_400, 5)).unwrap(),
            Some(Duration::new(86_400, 5))
        );
    }

    #[test]
    fn unknown_policies_are_refused_naming_the_field() {
        let e = restart_in("restart_policy", 7).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        assert_eq!(e.to_string(), "restart_policy: unknown value 7");
        let e = node_loss_in("node_loss", 9).unwrap_err();
        assert_eq!(e.to_string(), "node_loss: unknown value 9");
        let e = placement_in(Some(pb::PlacementRequest {
            strategy: 5,
            slivers: 1,
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(e.to_string(), "placement.strategy: unknown value 5");
    }

    #[test]
    fn policies_round_trip_through_the_proto() {
        for p in RestartPolicy::ALL {
            assert_eq!(restart_in("f", restart(*p) as i32).unwrap(), *p);
        }
        for p in PlacementStrategy::ALL {
            assert_eq!(strategy_in("f", strategy(*p) as i32).unwrap(), *p);
        }
        for p in NodeLossPolicy::ALL {
            assert_eq!(node_loss_in("f", node_loss(*p) as i32).unwrap(), *p);
        }
    }

    #[test]
    fn a_role_must_be_named() {
        assert_eq!(role_in(pb::Role::Pi as i32).unwrap(), Role::Pi);
        let e = role_in(0).unwrap_err();
        assert!(e.to_string().starts_with("role: required"), "{e}");
        assert_eq!(
            role_in(42).unwrap_err().to_string(),
            "role: unknown value 42"
        );
    }
}

/// Arbitrary create requests through the API edge and the core's validation: nothing panics,
/// enum values outside the proto are refused naming their field, and every duration let
/// through is at most `MAX_DURATION`.
#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    fn pb_duration_any() -> impl Strategy<Value = Option<prost_types::Duration>> {
        prop_oneof![
            Just(None),
            (0i64..40 * 86_400, 0i32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Some(prost_types::Duration { seconds, nanos })),
            (any::<i64>(), any::<i32>())
                .prop_map(|(seconds, nanos)| Some(prost_types::Duration { seconds, nanos })),
        ]
    }

    fn small_enum() -> impl Strategy<Value = i32> {
        prop_oneof![4 => 0i32..4, 1 => any::<i32>()]
    }

    prop_compose! {
        fn request()(
            name in prop_oneof!["[a-z][a-z0-9-]{0,10}", any::<String>()],
            image in prop_oneof!["[a-z/:]{1,20}", any::<String>()],
            command in vec(any::<String>(), 0..3),
            env in btree_map("[A-Z_]{1,6}", any::<String>(), 0..4),
            res in (any::<i64>(), prop_oneof![0i64..1 << 33, any::<i64>()], any::<i64>()),
            ports in vec(("[a-z]{1,5}", any::<u32>()), 0..3),
            placement in proptest::option::of((
                small_enum(), 0u32..3, 0u32..3,
                vec("[a-z]{1,4}", 0..3),
                btree_map("[a-z]{1,4}", ".{0,4}", 0..3),
            )),
            lease in pb_duration_any(),
            replace_after in pb_duration_any(),
            members in vec("[a-z]{1,4}", 0..3),
            policies in (small_enum(), small_enum()),
        ) -> pb::CreateSliceRequest {
            pb::CreateSliceRequest {
                name,
                description: String::new(),
                image,
                command,
                env: env.into_iter().collect(),
                resources: Some(pb::Resources { cpu_millis: res.0, memory_bytes: res.1, disk_bytes: res.2 }),
                ports: ports
                    .into_iter()
                    .map(|(name, container_port)| pb::NamedPort { name, container_port })
                    .collect(),
                placement: placement.map(|(strategy, slivers, per_site, sites, node_labels)| {
                    pb::PlacementRequest {
                        strategy,
                        slivers,
                        per_site,
                        sites,
                        node_labels: node_labels.into_iter().collect(),
                        best_effort: false,
                    }
                }),
                lease,
                members,
                restart_policy: policies.0,
                node_loss: policies.1,
                replace_after,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn create_requests_never_panic_and_durations_stay_bounded(r in request()) {
            let (restart, loss) = (r.restart_policy, r.node_loss);
            let strategy = r.placement.as_ref().map_or(0, |p| p.strategy);
            match slice_spec_in(r) {
                Ok(mut spec) => {
                    // An unknown enum value never slips through.
                    prop_assert!(pb::RestartPolicy::try_from(restart).is_ok());
                    prop_assert!(pb::NodeLossPolicy::try_from(loss).is_ok());
                    prop_assert!(pb::PlacementStrategy::try_from(strategy).is_ok());
                    for d in [spec.lease, spec.replace_after].into_iter().flatten() {
                        prop_assert!(d <= crate::core::MAX_DURATION);
                    }
                    let _ = spec.validate(Duration::from_secs(14 * 86_400));
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(matches!(e, Error::Invalid(_)), "{msg}");
                    let named = ["lease", "replace_after", "restart_policy", "node_loss", "placement.strategy"];
                    prop_assert!(named.iter().any(|f| msg.starts_with(f)), "{msg}");
                }
            }
        }

        #[test]
        fn durations_let_through_are_exact_and_bounded(seconds in any::<i64>(), nanos in any::<i32>()) {
            match duration("ttl", Some(prost_types::Duration { seconds, nanos })) {
                Ok(Some(d)) => {
                    prop_assert!(d <= crate::core::MAX_DURATION + Duration::from_secs(1));
                    let back = pb_duration(d);
                    prop_assert_eq!((back.seconds, back.nanos), (seconds, nanos));
                }
                Ok(None) => return Err(TestCaseError::fail("a given duration came back as none")),
                Err(e) => prop_assert!(e.to_string().starts_with("ttl"), "{e}"),
            }
        }
    }
}
