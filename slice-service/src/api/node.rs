//! `slicebed.v1.NodeService` handlers: enrollment and the node-initiated control channel.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg as NodeMsg;
use slicebed_proto::v1::node_service_server::NodeService;
use slicebed_proto::v1::service_message::Msg as ServiceMsg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{convert as cv, Api};
use crate::auth::Principal;
use crate::core::{NodeHello, ObservedStatus};
use crate::error::Error;
use crate::hub::NodeCommand;

type R<T> = Result<Response<T>, Status>;
type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ServiceMessage, Status>> + Send>>;
type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionFrame, Status>> + Send>>;

/// How long a node has to say Hello after opening the channel.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

fn observed(s: &pb::SliverStatus) -> Option<ObservedStatus> {
    Some(ObservedStatus {
        sliver_id: s.sliver_id.clone(),
        state: cv::observed_state(s.state)?,
        message: s.message.clone(),
        exit_code: s.exit_code,
    })
}

/// A node's engine report as the core takes it: `Some((words, since ms))` while unavailable.
fn engine_down(e: Option<pb::EngineStatus>) -> Option<(String, i64)> {
    let e = e.filter(|e| e.unavailable)?;
    let since = e
        .since
        .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000))
        .unwrap_or_else(crate::model::now_ms);
    let words = if e.message.is_empty() {
        "the node's container engine does not answer".to_string()
    } else {
        e.message.chars().take(500).collect()
    };
    Some((words, since))
}

fn msg(m: ServiceMsg) -> pb::ServiceMessage {
    pb::ServiceMessage { msg: Some(m) }
}

#[tonic::async_trait]
impl NodeService for Api {
    async fn enroll(&self, req: Request<pb::EnrollRequest>) -> R<pb::EnrollResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let range = r.port_range.unwrap_or_default();
        let hello = NodeHello {
            name: r.name,
            address: r.address,
            capacity: cv::res_in(r.capacity),
            port_first: range.first,
            port_last: range.last,
            labels: r.labels.into_iter().collect(),
            agent_version: r.agent_version,
        };
        let (node, credential) = self.core.enroll(&p, hello).await?;
        tracing::info!(node = %node.name, site = %node.site, "node enrolled");
        Ok(Response::new(pb::EnrollResponse {
            node: node.name,
            site: node.site,
            credential,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(&self, req: Request<Streaming<pb::SessionFrame>>) -> R<SessionStream> {
        let (md, _, mut inbound) = req.into_parts();
        let Principal::Node { name, .. } = self.principal_of(&md).await? else {
            return Err(Error::denied("session streams need a node credential").into());
        };
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no session id within 10s"))??;
        let Some(pb::session_frame::Frame::SessionId(id)) = first.and_then(|f| f.frame) else {
            return Err(Error::invalid("the first frame of a session must be its id").into());
        };
        let (tx, rx) = mpsc::channel(64);
        self.sessions.claim(
            &id,
            &name,
            super::sessions::NodeHalf {
                inbound,
                outbound: tx,
            },
        )?;
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as SessionStream
        ))
    }

    type ControlStream = ControlStream;

    async fn control(&self, req: Request<Streaming<pb::NodeMessage>>) -> R<ControlStream> {
        let (md, _, mut inbound) = req.into_parts();
        let Principal::Node { name, site } = self.principal_of(&md).await? else {
            return Err(Error::denied("the control channel needs a node credential").into());
        };
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10s"))??;
        let Some(NodeMsg::Hello(h)) = first.and_then(|m| m.msg) else {
            return Err(
                Error::invalid("the first message on the control channel must be Hello").into(),
            );
        };
        let range = h.port_range.unwrap_or_default();
        let hello = NodeHello {
            name: name.clone(),
            address: h.address,
            capacity: cv::res_in(h.capacity),
            port_first: range.first,
            port_last: range.last,
            labels: h.labels.into_iter().collect(),
            agent_version: h.agent_version,
        };
        let seen = h.observed.iter().filter_map(observed).collect();
        let engine = engine_down(h.engine);

        // Register before reading the desired set, so a change committed in between is
        // queued behind the full set rather than lost.
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<NodeCommand>(4096);
        let conn_id = self.core.hub.connect(&name, cmd_tx);
        let (_, desired) = match self.core.node_connected(&name, hello, seen, engine).await {
            Ok(x) => x,
            Err(e) => {
                self.core.hub.disconnect(&name, conn_id);
                return Err(e.into());
            }
        };
        tracing::info!(node = %name, slivers = desired.len(), "node connected");

        let (out_tx, out_rx) = mpsc::channel::<Result<pb::ServiceMessage, Status>>(4096);
        let welcome = pb::Welcome {
            node: name.clone(),
            site,
            heartbeat_interval: Some(cv::pb_duration(self.core.cfg.heartbeat_interval)),
        };
        let set = pb::DesiredSet {
            slivers: desired.iter().map(|(s, v)| cv::desired(s, v)).collect(),
        };
        // Fresh channel with room: these cannot fail.
        let _ = out_tx.try_send(Ok(msg(ServiceMsg::Welcome(welcome))));
        let _ = out_tx.try_send(Ok(msg(ServiceMsg::Desired(set))));

        let core = self.core.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = cmd_rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        let m = match cmd {
                            NodeCommand::Upsert(b) => ServiceMsg::Upsert(cv::desired(&b.0, &b.1)),
                            NodeCommand::Remove(id) => ServiceMsg::Remove(id),
                            NodeCommand::OpenSession(r) => ServiceMsg::OpenSession(cv::open_session(&r)),
                        };
                        if out_tx.send(Ok(msg(m))).await.is_err() {
                            break;
                        }
                    }
                    m = inbound.next() => {
                        match m {
                            Some(Ok(m)) => handle(&core, &name, m).await,
                            Some(Err(e)) => {
                                tracing::info!(node = %name, error = %e, "control channel broke");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            core.hub.disconnect(&name, conn_id);
            if let Err(e) = core.node_disconnected(&name).await {
                tracing::error!(node = %name, error = %e, "recording disconnect failed");
            }
            tracing::info!(node = %name, "node disconnected");
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(out_rx)) as ControlStream
        ))
    }
}

async fn handle(core: &crate::core::Core, node: &str, m: pb::NodeMessage) {
    match m.msg {
        Some(NodeMsg::Heartbeat(hb)) => {
            core.hub.touch(node, Some(cv::res_in(hb.usage)));
            if let Err(e) = core.engine_reported(node, engine_down(hb.engine)).await {
                tracing::error!(node, error = %e, "recording engine health failed");
            }
        }
        Some(NodeMsg::Status(s)) => {
            core.hub.touch(node, None);
            match observed(&s) {
                Some(o) => {
                    if let Err(e) = core.apply_status(node, o).await {
                        tracing::error!(node, error = %e, "applying sliver status failed");
                    }
                }
                None => tracing::warn!(
                    node,
                    state = s.state,
                    "node reported a state nodes may not report"
                ),
            }
        }
        Some(NodeMsg::Hello(_)) => tracing::warn!(node, "duplicate Hello ignored"),
        None => {}
    }
}
