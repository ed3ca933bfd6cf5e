//! The container runtime as the node manager needs it: a small async trait over domain types.
//!
//! Implementations: [`docker::DockerRuntime`] (the real engine, through bollard) and
//! [`fake::FakeRuntime`] (scripted, for reconciler tests). A runtime is scoped to ONE node:
//! several node managers may share an engine, so a runtime must never list, touch or remove
//! a container or network that is not labelled with its node.

pub mod container_config;
pub mod docker;
pub mod fake;
pub mod labels;

use std::future::Future;

use futures::stream::BoxStream;

use crate::domain::{ObservedSliver, SliverSpec};

/// Errors of a runtime, already rendered to words (no engine types leak out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not on the node, and there is no registry to pull it from.
    #[error("image {image:?} is not present")]
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// The engine did not answer at all (stopped, restarting, its socket gone, timed out):
    /// nothing is known about the operation, and nothing about a sliver should be concluded.
    #[error("{op}: container engine unavailable: {message}")]
    Unavailable {
        /// What was attempted.
        op: String,
        /// The transport's words.
        message: String,
    },
    /// The engine refused or failed an operation.
    #[error("{op}: {message}")]
    Engine {
        /// What was attempted, e.g. "create container sb-n1-abc".
        op: String,
        /// The engine's message.
        message: String,
    },
}

impl RuntimeError {
    /// Whether the engine itself could not be reached (as opposed to refusing an operation).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RuntimeError::Unavailable { .. })
    }
}

/// Result of runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Something happened to one of this node's containers; the sliver id if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChange {
    /// Sliver id from the container's labels.
    pub sliver_id: Option<String>,
    /// What happened (start, die, oom, destroy).
    pub action: String,
}

/// The operations the reconciler needs from a container runtime.
pub trait Runtime: Send + Sync + 'static {
    /// The node this runtime is scoped to.
    fn node(&self) -> &str;

    /// Creates the slice's network on this node if it does not exist.
    fn ensure_network(&self, slice: &str) -> impl Future<Output = Result<()>> + Send;

    /// Removes the slice's network on this node (absent is fine).
    fn remove_network(&self, slice: &str) -> impl Future<Output = Result<()>> + Send;

    /// Slices that have a network on this node.
    fn list_networks(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Creates and starts the sliver's container; returns its id. The slice network must exist.
    /// On failure no container of the sliver is left behind.
    fn create_and_start(&self, spec: &SliverSpec) -> impl Future<Output = Result<String>> + Send;

    /// Starts a created (or stopped) container.
    fn start(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Freezes a running container (all its processes, by the cgroup freezer). Pausing a
    /// paused container is fine.
    fn pause(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Thaws a paused container. Unpausing a container that is not paused is fine.
    fn unpause(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Stops and removes a container, paused or not (absent is fine).
    fn remove(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Every sliver container of this node, whatever its state.
    fn list(&self) -> impl Future<Output = Result<Vec<ObservedSliver>>> + Send;

    /// One container of this node by id or name; `None` if absent.
    fn inspect(
        &self,
        container: &str,
    ) -> impl Future<Output = Result<Option<ObservedSliver>>> + Send;

    /// Whether the engine answers at all, quickly (a hung engine must not hold up the
    /// answer for the length of a request timeout).
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// Notifications of changes to this node's containers. The stream may end (the engine
    /// restarted); callers re-subscribe and rely on a periodic resync for anything missed.
    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>>;
}
