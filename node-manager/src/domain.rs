//! The node manager's own vocabulary: what a sliver should be (`SliverSpec`), what the
//! container runtime shows (`ObservedSliver`) and what the node reports (`SliverReport`).
//!
//! Neither wire (proto) nor engine types may appear here; `convert` and `runtime::docker` translate.

use std::collections::BTreeMap;
use std::time::SystemTime;

pub use slicebed_units::Resources;

/// Inclusive range of host ports the node lends to slivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// What the runtime does when a sliver's program exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart on a non-zero exit code (also the default of the contract).
    #[default]
    OnFailure,
    /// Always restart.
    Always,
}

/// A published port: `host_port` on the node forwards to `container_port` (TCP).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Name the slice gave the port.
    pub name: String,
    /// Port inside the sliver.
    pub container_port: u16,
    /// Port on the node.
    pub host_port: u16,
}

/// One sliver the node should run, as told by the service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliverSpec {
    /// Sliver id (unique in the testbed).
    pub sliver_id: String,
    /// Slice name.
    pub slice: String,
    /// Index within the slice.
    pub index: u32,
    /// Image reference; never pulled.
    pub image: String,
    /// Command; empty means the image's default.
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub resources: Resources,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Spec generation; an older container is replaced.
    pub generation: u64,
    /// When the slice's lease ends; the node stops the sliver then on its own, even when cut
    /// off from the service. `None`: no end known. Not part of the container (a renewal
    /// changes it without a new generation), so it never causes a replacement.
    pub lease_expires_at: Option<SystemTime>,
    /// The digest the slice pinned its image to ("sha256:<hex>"); empty for a slice from
    /// before pinning, which runs the local `image`. When set, the node runs only the image
    /// it fetched from the store and verified ([`crate::fetch`]), never a local tag.
    #[serde(default)]
    pub image_digest: String,
    /// How a cluster pulls the pinned image from the service's registry (Kubernetes backend
    /// only; the Docker backend fetches blobs itself). Not part of the container: a renewal
    /// sends a new credential without a new generation.
    #[serde(default)]
    pub pull: Option<PullAccess>,
}

/// A read-only registry credential for one slice's pinned image, valid until `expires_at`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullAccess {
    /// Registry address ("host:port") as the cluster's nodes reach it.
    pub registry: String,
    /// Repository of the image there.
    pub repository: String,
    /// Username.
    pub username: String,
    /// Password (a secret: never logged).
    pub password: String,
    /// When the credential stops working.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for PullAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullAccess")
            .field("registry", &self.registry)
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl SliverSpec {
    /// Whether the lease has ended at `now` (an end exactly at `now` has ended).
    pub fn lease_ended(&self, now: SystemTime) -> bool {
        self.lease_expires_at.is_some_and(|end| end <= now)
    }
}

/// The lifecycle phase of a sliver's container, in terms every backend can map its own states
/// into (Docker's restarting, removing and dead are mapped in `runtime::docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerPhase {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Its program ended. `restarting`: the backend's restart policy starts it again by itself.
    Exited {
        /// Whether the backend is about to restart it.
        restarting: bool,
    },
    /// Being removed by the backend: neither reported nor acted on.
    Removing,
    /// The backend can neither run nor restart it any more: reported as ended, then replaced.
    Broken,
}

impl ContainerPhase {
    /// Ended, and not coming back by itself.
    pub const EXITED: ContainerPhase = ContainerPhase::Exited { restarting: false };
    /// Ended, and about to be restarted by the backend.
    pub const RESTARTING: ContainerPhase = ContainerPhase::Exited { restarting: true };
}

impl std::fmt::Display for ContainerPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerPhase::Created => "created",
            ContainerPhase::Running => "running",
            ContainerPhase::Paused => "paused",
            ContainerPhase::Exited { restarting: false } => "exited",
            ContainerPhase::Exited { restarting: true } => "restarting",
            ContainerPhase::Removing => "being removed",
            ContainerPhase::Broken => "broken",
        })
    }
}

/// A sliver container of this node, read back from the runtime (labels and state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSliver {
    /// Container id.
    pub container_id: String,
    /// Sliver id from the container's label.
    pub sliver_id: String,
    /// Slice from the container's label.
    pub slice: String,
    /// Generation from the container's label (0 if unreadable, which forces a replacement).
    pub generation: u64,
    /// Phase.
    pub phase: ContainerPhase,
    /// Exit code of the last run, if it ended.
    pub exit_code: Option<i64>,
    /// Whether the kernel's OOM killer ended the last run.
    pub oom_killed: bool,
    /// Restarts done by the restart policy.
    pub restarts: u32,
    /// Limits the container runs with.
    pub limits: Resources,
    /// The runtime's own error for the container, if any.
    pub error: Option<String>,
    /// The lease end the backend itself ends this container at, whatever the agent does (a
    /// Kubernetes Pod's `activeDeadlineSeconds`, which can never be raised); `None` when the
    /// backend keeps a container until told. A desired lease past it means the container must
    /// be replaced to live on (see `plan::reconcile`).
    pub ends_at: Option<SystemTime>,
}

/// The state a node reports for a sliver (a subset of the contract's `SliverState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedState {
    /// Being created.
    Creating,
    /// Running (possibly restarted by its policy).
    Running,
    /// Ended with exit code 0.
    Exited,
    /// Could not be created, or ended badly.
    Failed,
    /// Paused on the node.
    Suspended,
    /// Its container is gone.
    Deleted,
}

/// A sliver status to send to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliverReport {
    /// Sliver id.
    pub sliver_id: String,
    /// State.
    pub state: ReportedState,
    /// Why, in words a researcher can act on.
    pub message: String,
    /// Exit code of the last run, if it ended.
    pub exit_code: Option<i32>,
    /// Container id, for operators.
    pub container_id: String,
    /// Restarts done by the restart policy.
    pub restarts: u32,
}
