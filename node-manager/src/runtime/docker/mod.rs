//! [`Runtime`] over the Docker Engine API (bollard). Every object it creates carries the
//! node's labels, and every list is filtered by them: several node managers may share one
//! engine, and the engine — not this process — remembers what runs. It never pulls images
//! (no registry is reachable) and never mounts anything from the host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;

mod networks;

use super::container_config::container_config;
use super::{labels, Result, Runtime, RuntimeChange, RuntimeError};
use crate::domain::{ContainerPhase, ObservedSliver, Resources, SliverSpec};
use crate::subnets::Pool;

/// Seconds the engine may take to answer one request (not a stream).
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// How long a ping may take before the engine counts as hung.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A client for the engine at `host` (`unix:///path`, `tcp://h:p`, `http://h:p`), or at
/// `DOCKER_HOST` / the local socket when `None`. It speaks bollard's newest API version until
/// [`negotiate`] lowers it to the engine's: use [`connect`] unless the engine may be away.
pub fn client(host: Option<&str>) -> Result<Docker> {
    let v = bollard::API_DEFAULT_VERSION;
    let r = match host {
        None => Docker::connect_with_local_defaults().or_else(|_| Docker::connect_with_defaults()),
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
            Docker::connect_with_unix(h, REQUEST_TIMEOUT_SECS, v)
        }
        Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, v)
        }
        Some(h) => {
            return Err(RuntimeError::Engine {
                op: format!("connect to {h}"),
                message: "expected unix://PATH, tcp://HOST:PORT or http://HOST:PORT".into(),
            })
        }
    };
    r.map_err(|e| {
        engine(
            format!("connect to {}", host.unwrap_or("the local Docker engine")),
            e,
        )
    })
}

/// Lowers the client's API version to the engine's when the engine is older (bollard's
/// default is newer than many engines in the field, which refuse a too-new client on every
/// versioned call). Clones of a client share its version, so one negotiation serves them all.
pub async fn negotiate(docker: &Docker) -> Result<()> {
    docker
        .clone()
        .negotiate_version()
        .await
        .map(|_| ())
        .map_err(|e| engine("negotiate the engine API version", e))
}

/// A client for `host` (see [`client`]) that speaks the engine's API version.
pub async fn connect(host: Option<&str>) -> Result<Docker> {
    let docker = client(host)?;
    negotiate(&docker).await?;
    Ok(docker)
}

fn engine(op: impl Into<String>, e: DockerError) -> RuntimeError {
    let op = op.into();
    match e {
        DockerError::DockerResponseServerError { message, .. } => {
            RuntimeError::Engine { op, message }
        }
        // No answer from the engine: the transport failed, not the operation.
        e @ (DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_)) => RuntimeError::Unavailable {
            op,
            message: transport_words(&e),
        },
        other => RuntimeError::Engine {
            op,
            message: other.to_string(),
        },
    }
}

/// A transport error with its causes, on one line ("connection refused", not just "error
/// trying to connect").
fn transport_words(e: &DockerError) -> String {
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !words.contains(&text) {
            words = format!("{words}: {text}");
        }
        cause = c.source();
    }
    words
}

/// An engine error saying the container is already where we want it (the status code of
/// these refusals differs between engine versions, the words do not).
fn is_already_state(e: &DockerError, words: &str) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError { message, .. } if message.contains(words)
    )
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The Docker engine, scoped to one node.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    node: String,
    /// Whether the API version was negotiated; until then (the engine was away at start) the
    /// next ping or list negotiates first.
    negotiated: Arc<AtomicBool>,
    /// Serialises slice network creation in this process: engines before API 1.44 create a
    /// second network of the same name unless asked not to, which bollard no longer can.
    network_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where slice networks take their subnets; `None` leaves it to the engine's pools.
    pool: Option<Pool>,
}

impl DockerRuntime {
    /// A runtime for `node` over an engine connection.
    pub fn new(docker: Docker, node: impl Into<String>) -> Self {
        Self {
            docker,
            node: node.into(),
            negotiated: Arc::default(),
            network_lock: Arc::default(),
            pool: None,
        }
    }

    /// A runtime for `node` over the engine at `host` (see [`client`]), its API version
    /// negotiated now if the engine answers, else on the first ping that reaches it: an engine
    /// that is away when the agent starts is an outage to report, not a reason to exit.
    pub async fn connect(host: Option<&str>, node: impl Into<String>) -> Result<Self> {
        let rt = Self::new(client(host)?, node);
        match rt.ensure_negotiated().await {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "engine unavailable; the API version is negotiated once it answers")
            }
            Err(e) => return Err(e),
        }
        Ok(rt)
    }

    /// Negotiates the API version unless done already.
    async fn ensure_negotiated(&self) -> Result<()> {
        if self.negotiated.load(Ordering::Acquire) {
            return Ok(());
        }
        negotiate(&self.docker).await?;
        self.negotiated.store(true, Ordering::Release);
        tracing::debug!(version = %self.docker.client_version(), "engine API version negotiated");
        Ok(())
    }

    /// Takes slice networks' subnets from `pool` (see [`crate::subnets`]).
    pub fn with_network_pool(mut self, pool: Option<Pool>) -> Self {
        self.pool = pool;
        self
    }

    /// The engine connection.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    fn node_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![labels::node_filter(&self.node)])])
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine(format!("inspect image {image}"), e)),
        }
    }
}

/// Reads a sliver back from an inspected container; `None` if it is not a sliver of `node`.
fn observe(node: &str, c: ContainerInspectResponse) -> Option<ObservedSliver> {
    let config_labels = c.config.as_ref()?.labels.as_ref()?;
    if config_labels.get(labels::NODE).map(String::as_str) != Some(node) {
        return None;
    }
    let sliver_id = config_labels.get(labels::SLIVER)?.clone();
    let slice = config_labels
        .get(labels::SLICE)
        .cloned()
        .unwrap_or_default();
    let generation = config_labels
        .get(labels::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let state = c.state.unwrap_or_default();
    let phase = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerPhase::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerPhase::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerPhase::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerPhase::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerPhase::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerPhase::Exited,
        // Being stopped: its processes are still there until the stop completes.
        Some(ContainerStateStatusEnum::STOPPING) => ContainerPhase::Running,
        Some(ContainerStateStatusEnum::DEAD) => ContainerPhase::Dead,
        Some(ContainerStateStatusEnum::EMPTY) | None => ContainerPhase::Created,
    };
    let ended = matches!(
        phase,
        ContainerPhase::Exited | ContainerPhase::Dead | ContainerPhase::Restarting
    );
    let host = c.host_config.unwrap_or_default();
    Some(ObservedSliver {
        container_id: c.id.unwrap_or_default(),
        sliver_id,
        slice,
        generation,
        phase,
        exit_code: if ended { state.exit_code } else { None },
        oom_killed: state.oom_killed.unwrap_or(false),
        restarts: c.restart_count.unwrap_or(0).try_into().unwrap_or(0),
        limits: Resources {
            cpu_millis: host.nano_cpus.unwrap_or(0) / 1_000_000,
            memory_bytes: host.memory.unwrap_or(0),
            disk_bytes: config_labels
                .get(labels::DISK)
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        },
        error: state.error.filter(|e| !e.is_empty()),
    })
}

impl Runtime for DockerRuntime {
    fn node(&self) -> &str {
        &self.node
    }

    async fn ensure_network(&self, slice: &str) -> Result<()> {
        self.ensure_slice_network(slice).await
    }

    async fn remove_network(&self, slice: &str) -> Result<()> {
        self.remove_slice_networks(slice).await
    }

    async fn list_networks(&self) -> Result<Vec<String>> {
        self.slices_with_networks().await
    }

    async fn create_and_start(&self, spec: &SliverSpec) -> Result<String> {
        if !self.image_present(&spec.image).await? {
            return Err(RuntimeError::ImageMissing {
                image: spec.image.clone(),
            });
        }
        let name = labels::container_name(&self.node, &spec.sliver_id);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(opts), container_config(&self.node, spec))
            .await
            .map_err(|e| engine(format!("create container {name}"), e))?;
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // Leave nothing half-made: a created-but-unstartable container would only be
            // retried into the same error (a taken host port, a bad command).
            let _ = self.remove(&created.id).await;
            return Err(engine(format!("start container {name}"), e));
        }
        Ok(created.id)
    }

    async fn start(&self, container_id: &str) -> Result<()> {
        self.docker
            .start_container(container_id, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine(format!("start container {container_id}"), e))
    }

    async fn pause(&self, container_id: &str) -> Result<()> {
        match self.docker.pause_container(container_id).await {
            Ok(()) => Ok(()),
            // "is already paused".
            Err(e) if is_already_state(&e, "already paused") => Ok(()),
            Err(e) => Err(engine(format!("pause container {container_id}"), e)),
        }
    }

    async fn unpause(&self, container_id: &str) -> Result<()> {
        match self.docker.unpause_container(container_id).await {
            Ok(()) => Ok(()),
            Err(e) if is_already_state(&e, "is not paused") => Ok(()),
            Err(e) => Err(engine(format!("unpause container {container_id}"), e)),
        }
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(container_id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress": someone else (the engine) is removing it.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(format!("remove container {container_id}"), e)),
        }
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        self.ensure_negotiated().await?;
        let opts = ListContainersOptions {
            all: true,
            filters: Some(self.node_filters()),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine("list containers", e))?;
        let mut out = Vec::with_capacity(summaries.len());
        // The summary lacks exit codes and OOM flags; inspect each (a node runs few slivers).
        for id in summaries.into_iter().filter_map(|s| s.id) {
            if let Some(o) = self.inspect(&id).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(observe(&self.node, c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(format!("inspect container {container}"), e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await {
            Ok(Ok(_)) => self.ensure_negotiated().await,
            Ok(Err(e)) => Err(engine("ping", e)),
            Err(_) => Err(RuntimeError::Unavailable {
                op: "ping".into(),
                message: format!("no answer within {}s", PING_TIMEOUT.as_secs()),
            }),
        }
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![labels::node_filter(&self.node)]),
            (
                "event".to_string(),
                ["start", "die", "oom", "destroy", "pause", "unpause"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .map(|r| {
                r.map(|ev| RuntimeChange {
                    sliver_id: ev
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut attrs| attrs.remove(labels::SLIVER)),
                    action: ev.action.unwrap_or_default(),
                })
                .map_err(|e| engine("watch events", e))
            })
            .boxed()
    }
}
