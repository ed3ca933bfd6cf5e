//! Domain objects of the control plane. Plain data: no proto, no SQL.

use std::collections::BTreeMap;

use slicebed_units::Resources;

/// Milliseconds since the Unix epoch; how every time is stored.
pub type Millis = i64;

/// Now, in epoch milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May do everything.
    Admin,
    /// Manages their own site.
    Pi,
    /// Creates and uses slices.
    User,
}

impl Role {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Pi => "pi",
            Role::User => "user",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "pi" => Some(Role::Pi),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A site.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    pub display_name: String,
    pub city: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub enabled: bool,
    /// 0 = unlimited.
    pub max_slices: i64,
    /// 0 = unlimited.
    pub max_slivers: i64,
    pub created_at: Millis,
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The bootstrap admin has no site.
    pub site: Option<String>,
    pub created_at: Millis,
}

/// What an administrator decided about a node; liveness is kept apart, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Active,
    Draining,
    Disabled,
}

impl AdminState {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Self {
        match s {
            "draining" => AdminState::Draining,
            "disabled" => AdminState::Disabled,
            _ => AdminState::Active,
        }
    }
}

/// A node's state as users see it: administrative state combined with liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Enrolling,
    Ready,
    Unreachable,
    Draining,
    Disabled,
    /// Connected, but its container engine does not answer.
    EngineDown,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub site: String,
    pub address: String,
    pub capacity: Resources,
    pub port_first: u32,
    pub port_last: u32,
    pub labels: BTreeMap<String, String>,
    pub admin_state: AdminState,
    pub agent_version: String,
    /// Durable record of the last heartbeat, written on connect and disconnect, not per heartbeat.
    pub last_heartbeat: Option<Millis>,
    pub created_at: Millis,
    /// When draining with a deadline: when its remaining slivers are removed.
    pub drain_deadline: Option<Millis>,
}

/// A named port of a slice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub container_port: u32,
}

/// A named port bound to a host port of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AssignedPort {
    pub name: String,
    pub container_port: u32,
    pub host_port: u32,
}

/// Where and how many slivers a slice asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// "spread" or "pack".
    pub strategy: String,
    pub slivers: u32,
    pub per_site: u32,
    pub sites: Vec<String>,
    pub node_labels: BTreeMap<String, String>,
    pub best_effort: bool,
}

/// Whether a slice is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceLife {
    Live,
    Deleted,
    Expired,
}

impl SliceLife {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SliceLife::Live => "live",
            SliceLife::Deleted => "deleted",
            SliceLife::Expired => "expired",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Self {
        match s {
            "deleted" => SliceLife::Deleted,
            "expired" => SliceLife::Expired,
            _ => SliceLife::Live,
        }
    }
}

/// A slice as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Internal id; names are reused after deletion, ids never.
    pub id: String,
    pub name: String,
    pub owner: String,
    pub members: Vec<String>,
    pub description: String,
    /// Site whose quota it counts against; empty for the siteless bootstrap admin.
    pub site: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub ports: Vec<NamedPort>,
    pub placement: Placement,
    /// "never", "on-failure" or "always".
    pub restart_policy: String,
    pub created_at: Millis,
    pub lease_expires_at: Millis,
    pub life: SliceLife,
    /// "keep" or "replace": what happens to slivers on a lost node.
    pub node_loss: String,
    /// With "replace": how long a node may be silent before its slivers are re-placed.
    pub replace_after_ms: i64,
}

/// A sliver as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sliver {
    pub id: String,
    pub slice_id: String,
    pub slice: String,
    pub index: u32,
    pub node: String,
    pub site: String,
    pub state: crate::state::SliverState,
    pub resources: Resources,
    pub ports: Vec<AssignedPort>,
    pub last_error: String,
    pub exit_code: Option<i32>,
    pub generation: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub time: Millis,
    pub actor: String,
    pub object: String,
    pub action: String,
    pub detail: String,
}

/// An event not yet written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor: String,
    pub object: String,
    pub action: String,
    pub detail: String,
    /// The slice it concerns, so a slice's history includes its slivers'; empty otherwise.
    pub slice: String,
}

impl NewEvent {
    /// Builds an event.
    pub fn new(
        actor: &str,
        object: impl Into<String>,
        action: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.to_string(),
            object: object.into(),
            action: action.into(),
            detail: detail.into(),
            slice: String::new(),
        }
    }

    /// Marks the event as part of a slice's history.
    pub fn in_slice(mut self, slice: &str) -> Self {
        self.slice = slice.to_string();
        self
    }
}

/// Metadata of a token (user, enrollment or node credential).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: String,
    /// "user", "enroll" or "node".
    pub kind: String,
    /// User name, site name (enroll) or node name (node).
    pub subject: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked: bool,
    pub used_at: Option<Millis>,
}
