//! Serializable views of API objects: the JSON that `-o json` prints, and the enum names tables use.
//! Field names here are a promise to scripts; add fields, never rename them.

use std::collections::BTreeMap;

use serde::Serialize;
use slicebed_proto::v1 as pb;

use super::enum_name;
use crate::timefmt::rfc3339;

/// Lowercase state name of a node.
pub fn node_state(s: pb::NodeState) -> String {
    enum_name(s.as_str_name(), "NODE_STATE_")
}

/// Lowercase state name of a sliver.
pub fn sliver_state(s: pb::SliverState) -> String {
    enum_name(s.as_str_name(), "SLIVER_STATE_")
}

/// Lowercase state name of a slice.
pub fn slice_state(s: pb::SliceState) -> String {
    enum_name(s.as_str_name(), "SLICE_STATE_")
}

/// Lowercase role name.
pub fn role(r: pb::Role) -> String {
    enum_name(r.as_str_name(), "ROLE_")
}

#[derive(Debug, Serialize)]
pub struct ResourcesView {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub disk_bytes: i64,
}

impl From<Option<&pb::Resources>> for ResourcesView {
    fn from(r: Option<&pb::Resources>) -> Self {
        let r = r.cloned().unwrap_or_default();
        ResourcesView {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SiteView {
    pub name: String,
    pub display_name: String,
    pub city: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub enabled: bool,
    pub max_slices: u32,
    pub max_slivers: u32,
    pub created_at: Option<String>,
}

impl From<&pb::Site> for SiteView {
    fn from(s: &pb::Site) -> Self {
        let q = s.quota.unwrap_or_default();
        SiteView {
            name: s.name.clone(),
            display_name: s.display_name.clone(),
            city: s.city.clone(),
            country: s.country.clone(),
            latitude: s.latitude,
            longitude: s.longitude,
            enabled: s.enabled,
            max_slices: q.max_slices,
            max_slivers: q.max_slivers,
            created_at: rfc3339(s.created_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub site: String,
    pub created_at: Option<String>,
}

impl From<&pb::User> for UserView {
    fn from(u: &pb::User) -> Self {
        UserView {
            name: u.name.clone(),
            role: role(u.role()),
            site: u.site.clone(),
            created_at: rfc3339(u.created_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub description: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked: bool,
}

impl From<&pb::TokenInfo> for TokenView {
    fn from(t: &pb::TokenInfo) -> Self {
        TokenView {
            id: t.id.clone(),
            user: t.user.clone(),
            description: t.description.clone(),
            created_at: rfc3339(t.created_at.as_ref()),
            expires_at: rfc3339(t.expires_at.as_ref()),
            revoked: t.revoked,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PortRangeView {
    pub first: u32,
    pub last: u32,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub site: String,
    pub address: String,
    pub state: String,
    pub capacity: ResourcesView,
    pub allocated: ResourcesView,
    pub usage: ResourcesView,
    pub port_range: Option<PortRangeView>,
    pub labels: BTreeMap<String, String>,
    pub last_heartbeat: Option<String>,
    pub agent_version: String,
    pub slivers: u32,
    pub created_at: Option<String>,
    /// When draining with a deadline: when its remaining slivers are removed.
    pub drain_deadline: Option<String>,
    /// Set while the node reports that its container engine does not answer.
    pub engine_unavailable: Option<EngineDownView>,
    /// The Kubernetes cluster whose agent speaks for it (absent for a plain node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Set when that cluster's identity was revoked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_revoked: bool,
}

#[derive(Debug, Serialize)]
pub struct EngineDownView {
    pub message: String,
    pub since: Option<String>,
}

impl From<&pb::Node> for NodeView {
    fn from(n: &pb::Node) -> Self {
        NodeView {
            name: n.name.clone(),
            site: n.site.clone(),
            address: n.address.clone(),
            state: node_state(n.state()),
            capacity: n.capacity.as_ref().into(),
            allocated: n.allocated.as_ref().into(),
            usage: n.usage.as_ref().into(),
            port_range: n.port_range.map(|p| PortRangeView {
                first: p.first,
                last: p.last,
            }),
            labels: n.labels.clone().into_iter().collect(),
            last_heartbeat: rfc3339(n.last_heartbeat.as_ref()),
            agent_version: n.agent_version.clone(),
            slivers: n.slivers,
            created_at: rfc3339(n.created_at.as_ref()),
            drain_deadline: rfc3339(n.drain_deadline.as_ref()),
            engine_unavailable: n.engine.as_ref().filter(|e| e.unavailable).map(|e| {
                EngineDownView {
                    message: e.message.clone(),
                    since: rfc3339(e.since.as_ref()),
                }
            }),
            cluster: Some(n.cluster.clone()).filter(|c| !c.is_empty()),
            cluster_revoked: n.cluster_revoked,
        }
    }
}

/// "keep" or "replace"; the service treats an unset policy as keep, and so do we.
pub fn node_loss(p: pb::NodeLossPolicy) -> String {
    match p {
        pb::NodeLossPolicy::Replace => "replace".into(),
        pb::NodeLossPolicy::Keep | pb::NodeLossPolicy::Unspecified => "keep".into(),
    }
}

#[derive(Debug, Serialize)]
pub struct PortView {
    pub name: String,
    pub container_port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct PlacementView {
    pub strategy: String,
    pub slivers: u32,
    pub per_site: u32,
    pub sites: Vec<String>,
    pub node_labels: BTreeMap<String, String>,
    pub best_effort: bool,
}

#[derive(Debug, Serialize)]
pub struct SliverView {
    pub id: String,
    pub index: u32,
    pub node: String,
    pub site: String,
    pub node_address: String,
    pub state: String,
    pub resources: ResourcesView,
    pub ports: Vec<PortView>,
    pub last_error: String,
    pub exit_code: Option<i32>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::Sliver> for SliverView {
    fn from(s: &pb::Sliver) -> Self {
        SliverView {
            id: s.id.clone(),
            index: s.index,
            node: s.node.clone(),
            site: s.site.clone(),
            node_address: s.node_address.clone(),
            state: sliver_state(s.state()),
            resources: s.resources.as_ref().into(),
            ports: s
                .ports
                .iter()
                .map(|p| PortView {
                    name: p.name.clone(),
                    container_port: p.container_port,
                    host_port: Some(p.host_port),
                })
                .collect(),
            last_error: s.last_error.clone(),
            exit_code: s.exit_code,
            created_at: rfc3339(s.created_at.as_ref()),
            updated_at: rfc3339(s.updated_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SliceView {
    pub name: String,
    pub owner: String,
    pub members: Vec<String>,
    pub description: String,
    pub site: String,
    pub image: String,
    /// The digest the slice pinned `image` to in the image store; empty for older slices.
    pub image_digest: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: ResourcesView,
    pub ports: Vec<PortView>,
    pub placement: Option<PlacementView>,
    pub restart_policy: String,
    /// "keep" or "replace".
    pub node_loss: String,
    /// With "replace": the grace period in seconds, when the slice sets one.
    pub replace_after_seconds: Option<i64>,
    pub state: String,
    pub created_at: Option<String>,
    pub lease_expires_at: Option<String>,
    pub slivers: Vec<SliverView>,
}

impl From<&pb::Slice> for SliceView {
    fn from(s: &pb::Slice) -> Self {
        SliceView {
            name: s.name.clone(),
            owner: s.owner.clone(),
            members: s.members.clone(),
            description: s.description.clone(),
            site: s.site.clone(),
            image: s.image.clone(),
            image_digest: s.image_digest.clone(),
            command: s.command.clone(),
            env: s.env.clone().into_iter().collect(),
            resources: s.resources.as_ref().into(),
            ports: s
                .ports
                .iter()
                .map(|p| PortView {
                    name: p.name.clone(),
                    container_port: p.container_port,
                    host_port: None,
                })
                .collect(),
            placement: s.placement.as_ref().map(|p| PlacementView {
                strategy: enum_name(p.strategy().as_str_name(), "PLACEMENT_STRATEGY_"),
                slivers: p.slivers,
                per_site: p.per_site,
                sites: p.sites.clone(),
                node_labels: p.node_labels.clone().into_iter().collect(),
                best_effort: p.best_effort,
            }),
            restart_policy: enum_name(s.restart_policy().as_str_name(), "RESTART_POLICY_"),
            node_loss: node_loss(s.node_loss()),
            replace_after_seconds: s.replace_after.map(|d| d.seconds),
            state: slice_state(s.state()),
            created_at: rfc3339(s.created_at.as_ref()),
            lease_expires_at: rfc3339(s.lease_expires_at.as_ref()),
            slivers: s.slivers.iter().map(SliverView::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    pub time: Option<String>,
    pub actor: String,
    pub object: String,
    pub action: String,
    pub detail: String,
}

impl From<&pb::Event> for EventView {
    fn from(e: &pb::Event) -> Self {
        EventView {
            id: e.id,
            time: rfc3339(e.time.as_ref()),
            actor: e.actor.clone(),
            object: e.object.clone(),
            action: e.action.clone(),
            detail: e.detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::prost_types::Timestamp;

    fn slice() -> pb::Slice {
        pb::Slice {
            name: "demo".into(),
            owner: "alice".into(),
            image: "slicebed/base:latest".into(),
            state: pb::SliceState::Provisioning as i32,
            restart_policy: pb::RestartPolicy::OnFailure as i32,
            resources: Some(pb::Resources {
                cpu_millis: 100,
                memory_bytes: 64 << 20,
                disk_bytes: 0,
            }),
            ports: vec![pb::NamedPort {
                name: "http".into(),
                container_port: 8080,
            }],
            lease_expires_at: Some(Timestamp {
                seconds: 1_714_564_803,
                nanos: 5,
            }),
            slivers: vec![pb::Sliver {
                id: "demo-0-ab".into(),
                node: "node-mit".into(),
                site: "mit".into(),
                state: pb::SliverState::Running as i32,
                ports: vec![pb::AssignedPort {
                    name: "http".into(),
                    container_port: 8080,
                    host_port: 30001,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn slice_json_is_stable() {
        let v = serde_json::to_value(SliceView::from(&slice())).unwrap();
        assert_eq!(v["state"], "provisioning");
        assert_eq!(v["restart_policy"], "on_failure");
        assert_eq!(v["resources"]["memory_bytes"], 64 << 20);
        assert_eq!(v["lease_expires_at"], "2024-05-01T12:00:03Z");
        assert_eq!(v["created_at"], serde_json::Value::Null);
        assert_eq!(
            v["ports"][0],
            serde_json::json!({"name": "http", "container_port": 8080})
        );
        let s = &v["slivers"][0];
        assert_eq!(s["state"], "running");
        assert_eq!(s["ports"][0]["host_port"], 30001);
        assert_eq!(s["exit_code"], serde_json::Value::Null);
        assert_eq!(v["node_loss"], "keep");
        assert_eq!(v["replace_after_seconds"], serde_json::Value::Null);
        let mut r = slice();
        r.node_loss = pb::NodeLossPolicy::Replace as i32;
        r.replace_after = Some(slicebed_proto::prost_types::Duration {
            seconds: 300,
            nanos: 0,
        });
        let v = serde_json::to_value(SliceView::from(&r)).unwrap();
        assert_eq!(
            (&v["node_loss"], &v["replace_after_seconds"]),
            (&"replace".into(), &300.into())
        );
    }

    #[test]
    fn enums_and_roles() {
        assert_eq!(node_state(pb::NodeState::Unreachable), "unreachable");
        assert_eq!(role(pb::Role::Pi), "pi");
        let u = pb::User {
            name: "bob".into(),
            role: pb::Role::Admin as i32,
            site: "eth".into(),
            created_at: None,
        };
        assert_eq!(
            serde_json::to_value(UserView::from(&u)).unwrap()["role"],
            "admin"
        );
    }
}
