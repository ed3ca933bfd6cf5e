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
    /// The cluster whose agent speaks for it; `None` for a node with its own node manager.
    pub cluster: Option<String>,
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

/// A stored text value that names no variant (a corrupt row, or a newer service's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// What was being read, e.g. "restart policy".
    pub what: &'static str,
    /// The text found.
    pub value: String,
}

/// A closed set of policies or kinds stored as text: `as_str` is the stored (and JSON) form,
/// `FromStr` reads it back. The text values are the database's, so they never change.
macro_rules! stored_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v),+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// Stored form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_string() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

stored_enum!(
    /// How the scheduler chooses nodes (default: spread, as the API documents).
    #[derive(Default)]
    PlacementStrategy, "placement strategy" {
        /// Distinct sites first, then the least loaded nodes.
        #[default]
        Spread => "spread",
        /// Fill the most loaded node that still fits.
        Pack => "pack",
    }
);

stored_enum!(
    /// What a node does when a sliver's program exits (default: on-failure, as the API
    /// documents).
    #[derive(Default)]
    RestartPolicy, "restart policy" {
        Never => "never",
        #[default]
        OnFailure => "on-failure",
        Always => "always",
    }
);

stored_enum!(
    /// What happens to a slice's slivers when their node is lost (default: keep, as the API
    /// documents).
    #[derive(Default)]
    NodeLossPolicy, "node-loss policy" {
        /// Wait for the node to come back.
        #[default]
        Keep => "keep",
        /// Re-place them elsewhere after the slice's grace period.
        Replace => "replace",
    }
);

stored_enum!(
    /// Kinds of secret (a token row's `kind`).
    TokenKind, "token kind" {
        /// A person's API token.
        User => "user",
        /// A one-time node enrollment token of a site.
        Enroll => "enroll",
        /// A node's credential.
        Node => "node",
    }
);

/// Where and how many slivers a slice asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub strategy: PlacementStrategy,
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
    /// The digest `image` resolved to in the image store at creation ("sha256:<hex>"): what
    /// every sliver runs. Empty for slices from before pinning.
    pub image_digest: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub ports: Vec<NamedPort>,
    pub placement: Placement,
    pub restart_policy: RestartPolicy,
    pub created_at: Millis,
    pub lease_expires_at: Millis,
    pub life: SliceLife,
    /// What happens to slivers on a lost node.
    pub node_loss: NodeLossPolicy,
    /// With `Replace`: how long a node may be silent before its slivers are re-placed.
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

impl Sliver {
    /// Moves the sliver to `to` at `at` through the state machine, the one door for every
    /// state change the service applies (`SliverState::transition`).
    pub fn move_to(
        &mut self,
        to: crate::state::SliverState,
        at: Millis,
    ) -> Result<(), crate::state::IllegalTransition> {
        self.state = self.state.transition(to)?;
        self.updated_at = at;
        Ok(())
    }
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
    /// Id of the slice it concerns ('' otherwise). Names are reused; ids never are.
    pub slice_id: String,
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
    /// That slice's id: its history is looked up by id, never by the reusable name.
    pub slice_id: String,
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
            slice_id: String::new(),
        }
    }

    /// Marks the event as part of the history of the slice `name` with id `id`.
    pub fn in_slice(mut self, name: &str, id: &str) -> Self {
        self.slice = name.to_string();
        self.slice_id = id.to_string();
        self
    }
}

/// Metadata of a token (user, enrollment or node credential).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: String,
    pub kind: TokenKind,
    /// User name, site name (enroll) or node name (node).
    pub subject: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked: bool,
    pub used_at: Option<Millis>,
    /// The token it was created with: it expires no later and is revoked with it.
    pub parent_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored text of every policy and kind, as old rows hold it: changing one needs a
    /// migration.
    #[test]
    fn stored_forms_are_stable() {
        let forms = |all: &[&str]| all.join(",");
        let strategies: Vec<_> = PlacementStrategy::ALL.iter().map(|v| v.as_str()).collect();
        let restarts: Vec<_> = RestartPolicy::ALL.iter().map(|v| v.as_str()).collect();
        let losses: Vec<_> = NodeLossPolicy::ALL.iter().map(|v| v.as_str()).collect();
        let kinds: Vec<_> = TokenKind::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(forms(&strategies), "spread,pack");
        assert_eq!(forms(&restarts), "never,on-failure,always");
        assert_eq!(forms(&losses), "keep,replace");
        assert_eq!(forms(&kinds), "user,enroll,node");
        for v in RestartPolicy::ALL {
            assert_eq!(v.as_str().parse::<RestartPolicy>(), Ok(*v));
        }
        assert_eq!(
            "sometimes"
                .parse::<RestartPolicy>()
                .unwrap_err()
                .to_string(),
            "unknown restart policy \"sometimes\""
        );
    }

    #[test]
    fn placement_json_keeps_its_text() {
        let old = r#"{"strategy":"pack","slivers":2,"per_site":0,"sites":[],"node_labels":{},"best_effort":false}"#;
        let p: Placement = serde_json::from_str(old).unwrap();
        assert_eq!(p.strategy, PlacementStrategy::Pack);
        assert_eq!(serde_json::to_string(&p).unwrap(), old);
    }
}
