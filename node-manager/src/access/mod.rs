//! Researcher access on the node: the session relays for exec, interactive shells, logs and
//! file copy, between a `NodeService/Session` stream and the node backend ([`Runtime`]).
//! Nothing here knows an engine: what a backend cannot do is refused with a message.
//!
//! The service asks over the control channel (`OpenSession`); the node dials a NEW
//! `NodeService/Session` call on the same connection with its own credential and serves it in a
//! task of its own, so a session never blocks the control loop or reconciliation. Every byte
//! rides connections the node opened; nothing here listens.
//!
//! It must never act outside this node's slivers (a sliver is found only among the backend's
//! own node's containers), never leave an exec running once its session is gone, and never
//! hold a whole stream in memory (channels are bounded; gRPC flow control pushes back to the
//! source).

mod copy;
mod exec;
pub mod idle;
mod logs;
pub mod stream;
mod target;
#[cfg(test)]
mod tests;

use crate::connect::NodeClient;
use slicebed_proto::v1::open_session::Kind;
use slicebed_proto::v1::OpenSession;

use crate::runtime::Runtime;
use idle::{limit_from, Idle};
use stream::{failed, Session};

/// Access to one node's slivers through its backend.
#[derive(Clone)]
pub struct Access<R> {
    rt: R,
}

impl<R: Runtime + Clone> Access<R> {
    /// Access to the slivers of `rt`'s node.
    pub fn new(rt: R) -> Self {
        Self { rt }
    }

    /// Access through a runtime (a clone shares its engine connection).
    pub fn from_runtime(rt: &R) -> Self {
        Self::new(rt.clone())
    }

    /// Serves one session about `sliver_id` to its end; always ends the stream with
    /// `SessionEnd` unless the service went away first.
    pub async fn serve(&self, sliver_id: &str, kind: Option<Kind>, s: Session) {
        let (rt, can) = (&self.rt, self.rt.capabilities());
        match kind {
            Some(Kind::Exec(_)) if !can.exec => s.finish(failed(unable("run commands"))).await,
            Some(Kind::Logs(_)) if !can.logs => s.finish(failed(unable("read logs"))).await,
            Some(Kind::CopyTo(_) | Kind::CopyFrom(_)) if !can.copy => {
                s.finish(failed(unable("copy files"))).await
            }
            Some(Kind::Exec(start)) => exec::run(rt, sliver_id, start, s).await,
            Some(Kind::Logs(req)) => logs::run(rt, sliver_id, req, s).await,
            Some(Kind::CopyTo(dir)) => copy::to(rt, sliver_id, &dir, s).await,
            Some(Kind::CopyFrom(path)) => copy::from(rt, sliver_id, &path, s).await,
            None => s.finish(failed("unknown session kind")).await,
        }
    }
}

/// The refusal of something the backend cannot do.
fn unable(what: &str) -> String {
    format!("this node's backend cannot {what} in slivers")
}

/// Starts sessions the service asks for on one control connection.
#[derive(Clone)]
pub struct Launcher<R> {
    client: NodeClient,
    access: Option<Access<R>>,
}

impl<R: Runtime + Clone> Launcher<R> {
    /// Sessions over `client`'s connection (which carries the node credential); without
    /// `access` every session is refused with a message.
    pub fn new(client: NodeClient, access: Option<Access<R>>) -> Self {
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
