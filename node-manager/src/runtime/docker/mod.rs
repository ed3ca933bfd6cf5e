//! [`Runtime`] over the Docker Engine API (bollard): the only module of the node manager that
//! knows Docker. Every object it creates carries the node's labels, and every list is filtered
//! by them: several node managers may share one engine, and the engine — not this process —
//! remembers what runs. It never pulls images (no registry is reachable) and never mounts
//! anything from the host.
//!
//! Files: `connect` (client, API version negotiation, error mapping), `containers`,
//! `container_config` (a spec as the engine's configuration), `observe` (an inspected
//! container as an [`ObservedSliver`]), `networks`, `firewall` (per-slice iptables rules that
//! keep slivers off the host and other slices' ports), `stats` (one sampling pass of CPU, memory and network counters), `disk` (the engine's cap on a
//! container's writable layer where its driver has one, else measuring it), `exec` and `kill` (ending an exec's host
//! process tree), `logs`, `copy`, `image`.

mod connect;
mod container_config;
mod containers;
mod copy;
mod disk;
mod exec;
mod firewall;
mod image;
mod kill;
mod logs;
mod networks;
mod observe;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use connect::{client, connect, negotiate, EngineTls};
pub use firewall::FirewallError;

use super::{
    labels, Capabilities, DiskUse, ExecProcess, ExecSpec, ImageImport, LogsSpec, Output, Result,
    Runtime, RuntimeChange, RuntimeError, TermSize,
};
use crate::domain::{ObservedSliver, SliverSpec};
use crate::subnets::Pool;

/// How long a ping may take before the engine counts as hung.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The node's firewall once iptables answered (a failed probe is retried next time:
    /// at boot the engine may not have made its DOCKER-USER chain yet).
    firewall: Arc<tokio::sync::OnceCell<firewall::Firewall>>,
    /// Why slices cannot be isolated whatever iptables says (the engine is on another host).
    remote_engine: Option<String>,
    /// Run slivers even when slices cannot be isolated (`--allow-unisolated`).
    allow_unisolated: bool,
    /// Where slivers' ports are published: the node's announced address, else every address.
    publish_ip: std::net::IpAddr,
    /// Whether the engine caps writable layers (`disk::UNKNOWN` until asked).
    storage_opt: Arc<std::sync::atomic::AtomicU8>,
    /// When each running container started, read once per container (`stats`).
    started: stats::StartTimes,
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
            firewall: Arc::default(),
            remote_engine: None,
            allow_unisolated: false,
            publish_ip: container_config::ANY_ADDRESS,
            storage_opt: Arc::new(disk::UNKNOWN.into()),
            started: Default::default(),
        }
    }

    /// A runtime for `node` over the engine at `host` (see [`client`]), its API version
    /// negotiated now if the engine answers, else on the first ping that reaches it: an engine
    /// that is away when the agent starts is an outage to report, not a reason to exit.
    pub async fn connect(host: Option<&str>, node: impl Into<String>) -> Result<Self> {
        Self::connect_with(host, None, node).await
    }

    /// [`DockerRuntime::connect`] over TLS with `tls` (else as `DOCKER_TLS_VERIFY` says).
    pub async fn connect_with(
        host: Option<&str>,
        tls: Option<&EngineTls>,
        node: impl Into<String>,
    ) -> Result<Self> {
        let mut rt = Self::new(client(host, tls)?, node);
        rt.remote_engine = host.filter(|h| connect::is_remote(h)).map(|h| {
            format!("the engine at {h} is on another host, where this node manager cannot install firewall rules")
        });
        match rt.ensure_negotiated().await {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "engine unavailable; the API version is negotiated once it answers")
            }
            Err(e) => return Err(e),
        }
        Ok(rt)
    }

    /// Takes slice networks' subnets from `pool` (see [`crate::subnets`]).
    pub fn with_network_pool(mut self, pool: Option<Pool>) -> Self {
        self.pool = pool;
        self
    }

    /// Publishes slivers' ports on the node's announced `address` only, when it is an IP
    /// address of the engine's host (a name, or an address of a NAT in front of the node,
    /// cannot be bound: ports then stay on every address, as the log says).
    pub fn with_publish_address(mut self, address: &str) -> Self {
        let host = address.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {}
            // A remote engine's address cannot be checked from here; trust the operator.
            Ok(ip) if self.remote_engine.is_some() || is_local(ip) => self.publish_ip = ip,
            Ok(ip) => {
                tracing::warn!(address = %ip, "the announced address is not one of this host's; slivers' ports are published on every address")
            }
            Err(_) => {
                tracing::warn!(%address, "the announced address is not an IP address; slivers' ports are published on every address")
            }
        }
        self
    }

    /// Where slivers' ports are published.
    pub fn publish_ip(&self) -> std::net::IpAddr {
        self.publish_ip
    }

    /// Runs slivers even where slices cannot be isolated (no iptables, not root, a remote
    /// engine), instead of refusing them: for development testbeds only.
    pub fn allow_unisolated(mut self, allow: bool) -> Self {
        self.allow_unisolated = allow;
        self
    }

    /// Whether slices are isolated on this node: `Ok` if they are, else why not. Probes
    /// iptables unless done already.
    pub async fn isolation(&self) -> std::result::Result<(), FirewallError> {
        self.probe_firewall().await.map(|_| ())
    }

    async fn probe_firewall(&self) -> std::result::Result<&firewall::Firewall, FirewallError> {
        if let Some(why) = &self.remote_engine {
            return Err(FirewallError(why.clone()));
        }
        self.firewall
            .get_or_try_init(|| firewall::Firewall::probe(&self.node))
            .await
    }

    /// The firewall to install slice rules with; `None` when running unisolated was allowed.
    /// Refuses (naming why and what to do) when slices cannot be isolated and that was not.
    async fn firewall(&self) -> Result<Option<&firewall::Firewall>> {
        match self.probe_firewall().await {
            Ok(fw) => Ok(Some(fw)),
            Err(_) if self.allow_unisolated => Ok(None),
            Err(why) => Err(RuntimeError::Engine {
                op: "isolate the slice network".into(),
                message: format!(
                    "node {} cannot isolate slices ({why}); run the node manager as root on the engine's host with iptables, or start it with --allow-unisolated",
                    self.node
                ),
            }),
        }
    }

    /// The engine connection (for tests that observe the engine independently).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Where the engine keeps images and containers, if it says (to measure disk capacity).
    pub async fn data_root(&self) -> Option<std::path::PathBuf> {
        self.ensure_negotiated().await.ok()?;
        let info = self.docker.info().await.ok()?;
        info.docker_root_dir.map(std::path::PathBuf::from)
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

    fn node_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![labels::node_filter(&self.node)])])
    }
}

/// Whether `ip` is an address of this host (it can be bound).
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

impl Runtime for DockerRuntime {
    fn node(&self) -> &str {
        &self.node
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Known once probed (the agent probes at start, every network step again).
            isolation: self.remote_engine.is_none() && self.firewall.initialized(),
            disk_usage: true,
            ..Capabilities::ALL
        }
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
        self.create_and_start_container(spec).await
    }

    async fn start(&self, container_id: &str) -> Result<()> {
        self.start_container(container_id).await
    }

    async fn pause(&self, container_id: &str) -> Result<()> {
        self.pause_container(container_id).await
    }

    async fn unpause(&self, container_id: &str) -> Result<()> {
        self.unpause_container(container_id).await
    }

    async fn stop(&self, container_id: &str) -> Result<()> {
        self.stop_container(container_id).await
    }

    async fn disk_usage(&self) -> Result<Vec<DiskUse>> {
        self.container_disk_usage().await
    }

    async fn stats(&self) -> Result<Vec<super::ContainerStats>> {
        self.container_stats().await
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        self.remove_container(container_id).await
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        self.list_containers().await
    }

    async fn find_sliver(&self, sliver_id: &str) -> Result<Option<ObservedSliver>> {
        self.find_sliver_container(sliver_id).await
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        self.inspect_container(container).await
    }

    async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await {
            Ok(Ok(_)) => self.ensure_negotiated().await,
            Ok(Err(e)) => Err(connect::engine("ping", e)),
            Err(_) => Err(RuntimeError::Unavailable {
                op: "ping".into(),
                message: format!("no answer within {}s", PING_TIMEOUT.as_secs()),
            }),
        }
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        self.container_changes()
    }

    async fn exec(&self, container_id: &str, spec: ExecSpec) -> Result<ExecProcess> {
        self.start_exec(container_id, spec).await
    }

    async fn resize_exec(&self, exec_id: &str, size: TermSize) -> Result<()> {
        self.resize_exec_tty(exec_id, size).await
    }

    async fn wait_exec(&self, exec_id: &str) -> Result<Option<i64>> {
        self.wait_exec_exit(exec_id).await
    }

    fn logs(&self, container_id: &str, spec: LogsSpec) -> BoxStream<'static, Result<Output>> {
        self.container_logs(container_id, spec)
    }

    async fn copy_in(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        self.upload(container_id, dir, tar).await
    }

    fn copy_out(&self, container_id: &str, path: &str) -> BoxStream<'static, Result<Bytes>> {
        self.download(container_id, path)
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.image_id_of(reference).await
    }

    async fn import_image(&self, image: ImageImport) -> Result<()> {
        self.import(image).await
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        self.remove_image_id(id).await
    }

    async fn load_image(
        &self,
        reference: &str,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<()> {
        self.load(reference, archive).await
    }
}
