//! Researcher access on the node: exec, interactive shells, logs and file copy.
//!
//! The service asks over the control channel (`OpenSession`); the node dials a NEW
//! `NodeService/Session` call on the same connection with its own credential and serves it in a
//! task of its own, so a session never blocks the control loop or reconciliation. Every byte
//! rides connections the node opened; nothing here listens.
//!
//! It must never act outside this node's slivers (containers are found by node AND sliver
//! label), never leave an exec running once its session is gone, and never hold a whole stream
//! in memory (channels are bounded; gRPC flow control pushes back to the source).

mod copy;
mod exec;
pub mod idle;
pub mod kill;
mod logs;
pub mod stream;
mod target;

use crate::connect::NodeClient;
use bollard::errors::Error as DockerError;
use bollard::Docker;
use slicebed_proto::v1::open_session::Kind;
use slicebed_proto::v1::OpenSession;

use crate::runtime::docker::DockerRuntime;
use idle::{limit_from, Idle};
use stream::{failed, Session};

/// Access to one node's slivers through its container engine.
#[derive(Clone)]
pub struct Access {
    docker: Docker,
    node: String,
}

impl Access {
    /// Access to `node`'s slivers in the engine behind `docker`.
    pub fn new(docker: Docker, node: impl Into<String>) -> Self {
        Self {
            docker,
            node: node.into(),
        }
    }

    /// Access through the engine and node of a Docker runtime.
    pub fn from_runtime(rt: &DockerRuntime) -> Self {
        use crate::runtime::Runtime;
        Self::new(rt.docker().clone(), rt.node())
    }

    /// Serves one session about `sliver_id` to its end; always ends the stream with
    /// `SessionEnd` unless the service went away first.
    pub async fn serve(&self, sliver_id: &str, kind: Option<Kind>, s: Session) {
        let (d, n) = (&self.docker, self.node.as_str());
        match kind {
            Some(Kind::Exec(start)) => exec::run(d, n, sliver_id, start, s).await,
            Some(Kind::Logs(req)) => logs::run(d, n, sliver_id, req, s).await,
            Some(Kind::CopyTo(dir)) => copy::to(d, n, sliver_id, &dir, s).await,
            Some(Kind::CopyFrom(path)) => copy::from(d, n, sliver_id, &path, s).await,
            None => s.finish(failed("unknown session kind")).await,
        }
    }
}

/// Starts sessions the service asks for on one control connection.
#[derive(Clone)]
pub struct Launcher {
    client: NodeClient,
    access: Option<Access>,
}

impl Launcher {
    /// Sessions over `client`'s connection (which carries the node credential); without
    /// `access` every session is refused with a message.
    pub fn new(client: NodeClient, access: Option<Access>) -> Self {
        Self { client, access }
    }

    /// Serves `open` in a task of its own and returns at once.
    pub fn spawn(&self, open: OpenSession) {
        let me = self.clone();
        tokio::spawn(async move { me.serve(open).await });
    }

    async fn serve(self, open: OpenSession) {
        let idle = Idle::new(limit_from(open.idle_timeout));
        let kind = kind_name(open.kind.as_ref());
        tracing::info!(session = %short(&open.session_id), sliver = %open.sliver_id, kind, "session requested");
        let s = match stream::open(self.client, &open.session_id, idle).await {
            Ok(s) => s,
            Err(e) => {
                let error = crate::agent::chain(&e);
                tracing::warn!(session = %short(&open.session_id), error, "cannot open session stream");
                return;
            }
        };
        match self.access {
            Some(a) => a.serve(&open.sliver_id, open.kind, s).await,
            None => {
                s.finish(failed("this node manager does not serve access sessions"))
                    .await
            }
        }
        tracing::debug!(session = %short(&open.session_id), kind, "session ended");
    }
}

/// Session ids are bearer-like secrets: log only a prefix.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn kind_name(k: Option<&Kind>) -> &'static str {
    match k {
        Some(Kind::Exec(_)) => "exec",
        Some(Kind::Logs(_)) => "logs",
        Some(Kind::CopyTo(_)) => "copy-to",
        Some(Kind::CopyFrom(_)) => "copy-from",
        None => "unknown",
    }
}

/// The engine's message without bollard's wrapping.
pub(crate) fn engine_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
