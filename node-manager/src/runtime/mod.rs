//! The node backend as the node manager needs it: one async trait over domain types and byte
//! streams — containers, slice networks, pause, exec, logs, copy and images — plus
//! [`Capabilities`] saying which of these a backend can do.
//!
//! Implementations: [`docker::DockerRuntime`] (the Docker engine; the only code that knows
//! its client library) and [`fake::FakeRuntime`] (scripted, for unit tests, and the model for a new
//! backend). A runtime is scoped to ONE node: several node managers may share an engine, so a
//! runtime must never list, touch or remove a container or network that is not its node's.
//! No engine type may cross this trait.

pub mod docker;
pub mod fake;
pub mod hardening;
mod io;
pub mod kubernetes;
pub mod labels;

use std::future::Future;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use io::{Capabilities, ExecProcess, ExecSpec, Killer, LogsSpec, Output, TermSize};

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

    /// The engine's (or transport's) words alone, without the operation: for researchers,
    /// whose session already says what was attempted.
    pub fn message(&self) -> String {
        match self {
            RuntimeError::ImageMissing { .. } => self.to_string(),
            RuntimeError::Unavailable { message, .. } | RuntimeError::Engine { message, .. } => {
                message.clone()
            }
        }
    }
}

/// A root file system to import as an image (no registry: images are made on the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageImport {
    /// The reference to create, `repo:tag`.
    pub reference: String,
    /// The root file system as a tar archive.
    pub rootfs: Bytes,
    /// The default command.
    pub command: Vec<String>,
    /// The default environment.
    pub env: Vec<(String, String)>,
}

/// Result of runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What one of this node's containers wrote to its own file system (its writable layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUse {
    /// Container id.
    pub container_id: String,
    /// Bytes written.
    pub bytes: i64,
}

/// Cumulative counters of one running sliver container, read by [`Runtime::stats`]. Rates
/// are the sampler's business (`crate::usage`): it keeps the previous pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    /// Container id.
    pub container_id: String,
    /// Sliver id from the container's labels.
    pub sliver_id: String,
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use without the page cache the kernel can reclaim (the working set).
    pub memory_bytes: i64,
    /// Network bytes received since the container started, over all its interfaces.
    pub net_rx_bytes: u64,
    /// Network bytes sent since the container started.
    pub net_tx_bytes: u64,
    /// When the container's current run started (its counters count from then), if the
    /// backend knows: a sliver's first reading then already gives rates.
    pub started_at: Option<std::time::SystemTime>,
    /// When the engine read these counters, if it says. Docker reads them on its own tick and
    /// may answer with a reading taken up to a second before (or after the request was sent),
    /// so rates are worked out between the engine's own read times when both readings have
    /// one, never between the times the node manager asked.
    pub read_at: Option<std::time::SystemTime>,
}

/// Something happened to one of this node's containers; the sliver id if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChange {
    /// Sliver id from the container's labels.
    pub sliver_id: Option<String>,
    /// What happened (start, die, oom, destroy).
    pub action: String,
}

/// A node backend: what the reconciler, the access sessions and the image builder need.
/// Every method but [`Runtime::capabilities`] may be unsupported by a backend whose
/// capabilities say so; callers check first (and a backend answers such a call with an error).
pub trait Runtime: Send + Sync + 'static {
    /// The node this runtime is scoped to.
    fn node(&self) -> &str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

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

    /// Stops a container without removing it; its restart policy does not start it again
    /// (absent or stopped is fine).
    fn stop(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// What each of this node's containers, stopped ones too, wrote to its own file system
    /// (see [`Capabilities::disk_usage`]). May take a while: callers ask on an interval.
    fn disk_usage(&self) -> impl Future<Output = Result<Vec<DiskUse>>> + Send;

    /// The counters of every running sliver container of this node, in one pass over them (a
    /// request per container at most, a few at a time, each bounded in time; one the engine
    /// does not answer for in time is left out). An error only when the engine cannot list.
    fn stats(&self) -> impl Future<Output = Result<Vec<ContainerStats>>> + Send;

    /// Stops and removes a container, paused or not (absent is fine).
    fn remove(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Every sliver container of this node, whatever its state.
    fn list(&self) -> impl Future<Output = Result<Vec<ObservedSliver>>> + Send;

    /// The container of sliver `sliver_id` among this node's; `None` if it has none.
    fn find_sliver(
        &self,
        sliver_id: &str,
    ) -> impl Future<Output = Result<Option<ObservedSliver>>> + Send;

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

    /// Starts `spec` in a running container; returns once the process runs (or ended).
    fn exec(
        &self,
        container_id: &str,
        spec: ExecSpec,
    ) -> impl Future<Output = Result<ExecProcess>> + Send;

    /// Changes the terminal size of an exec started with a terminal.
    fn resize_exec(&self, exec_id: &str, size: TermSize)
        -> impl Future<Output = Result<()>> + Send;

    /// Waits for an exec whose output closed to end; its exit code if the backend knows it.
    fn wait_exec(&self, exec_id: &str) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The container's log (stdout and stderr).
    fn logs(&self, container_id: &str, spec: LogsSpec) -> BoxStream<'static, Result<Output>>;

    /// Extracts the tar stream `tar` into directory `dir` of the container. Refuses a `dir`
    /// that is not a directory before extracting anything. Errors are worded for researchers.
    fn copy_in(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// `path` of the container (file or directory) as a tar stream. Errors are worded for
    /// researchers.
    fn copy_out(&self, container_id: &str, path: &str) -> BoxStream<'static, Result<Bytes>>;

    /// The id of image `reference` if present.
    fn image_id(&self, reference: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Imports a root file system as an image.
    fn import_image(&self, image: ImageImport) -> impl Future<Output = Result<()>> + Send;

    /// Removes an image by id unless a container still uses it.
    fn remove_image(&self, id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Loads an image archive in the `docker save` layout (`manifest.json`, the config and
    /// the layer tars) streamed from `archive`, which names `reference` among its tags.
    /// Succeeds only once `reference` is present; a read error of the stream aborts the load.
    /// The caller has verified every byte: a backend never fetches anything itself.
    fn load_image(
        &self,
        reference: &str,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> impl Future<Output = Result<()>> + Send;
}
