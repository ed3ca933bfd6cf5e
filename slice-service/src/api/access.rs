//! `slicebed.v1.AccessService`: exec, logs, copy and the endpoint directory. Each call is
//! authorised by `Core::access_target`, then relayed byte for byte to a session stream the
//! sliver's node opened for it. Closing either side closes the other.

use std::pin::Pin;

use futures::Stream;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::access_service_server::AccessService;
use slicebed_proto::v1::session_frame::Frame;
use slicebed_proto::v1::{copy_to_request, exec_request, exec_response, logs_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::sessions::{NodeHalf, OPEN_TIMEOUT};
use super::{convert as cv, Api};
use crate::auth::Principal;
use crate::error::Error;
use crate::hub::{NodeCommand, SessionKind, SessionRequest};
use crate::limits::{Slot, StreamKind};

type R<T> = Result<Response<T>, Status>;
type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How long a session may sit with no byte moving before the node ends it.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

fn frame(f: Frame) -> Result<pb::SessionFrame, Status> {
    Ok(pb::SessionFrame { frame: Some(f) })
}

fn sliver_ref(r: Option<pb::SliverRef>) -> Result<pb::SliverRef, Error> {
    r.ok_or_else(|| Error::invalid("sliver (slice and index) is required"))
}

impl Api {
    /// Authorises, asks the node for a session stream and waits for it.
    async fn open(
        &self,
        p: &Principal,
        r: pb::SliverRef,
        action: &str,
        what: String,
        kind: SessionKind,
    ) -> Result<(NodeHalf, Slot), Status> {
        let user = p.user()?.name.clone();
        let cap = match kind {
            SessionKind::Exec { .. } => StreamKind::Exec,
            SessionKind::Logs { .. } => StreamKind::Logs,
            SessionKind::CopyTo(_) | SessionKind::CopyFrom(_) => StreamKind::Copy,
        };
        let slot = self.limits.reserve(&user, cap)?;
        let v = self
            .core
            .access_target(p, &r.slice, r.index, action, &what)
            .await?;
        let (id, rx) = self.sessions.expect(&v.node);
        let req = SessionRequest {
            session_id: id.clone(),
            sliver_id: v.id.clone(),
            kind,
            idle_timeout: IDLE_TIMEOUT,
        };
        self.core
            .hub
            .send(&v.node, NodeCommand::OpenSession(Box::new(req)));
        match tokio::time::timeout(OPEN_TIMEOUT, rx).await {
            Ok(Ok(half)) => Ok((half, slot)),
            _ => {
                self.sessions.abandon(&id);
                Err(Error::Unavailable(format!(
                    "node {} did not open the session within {OPEN_TIMEOUT:?}",
                    v.node
                ))
                .into())
            }
        }
    }
}

/// The node's last words as a status for calls that end with one.
fn end_status(end: &pb::SessionEnd) -> Option<Status> {
    (!end.error.is_empty()).then(|| Status::failed_precondition(end.error.clone()))
}

#[tonic::async_trait]
impl AccessService for Api {
    type ExecStream = Out<pb::ExecResponse>;

    async fn exec(&self, req: Request<Streaming<pb::ExecRequest>>) -> R<Self::ExecStream> {
        let (md, _, mut client) = req.into_parts();
        let (p, token, secret) = self.principal_token_of(&md).await?;
        let Some(exec_request::Msg::Start(start)) = client.message().await?.and_then(|m| m.msg)
        else {
            return Err(Error::invalid("the first message of an exec must be start").into());
        };
        if start.command.is_empty() {
            return Err(Error::invalid("command is required").into());
        }
        let size = start.size.unwrap_or_default();
        let kind = SessionKind::Exec {
            command: start.command.clone(),
            tty: start.tty,
            cols: size.cols,
            rows: size.rows,
            env: start.env.into_iter().collect(),
            stdin: start.stdin,
        };
        let action = if start.tty { "shell" } else { "exec" };
        let (half, slot) = self
            .open(
                &p,
                sliver_ref(start.sliver)?,
                action,
                start.command.join(" "),
                kind,
            )
            .await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(relay_exec(client, half, tx, slot));
        // A shell lasts as long as its token: revoked or expired, the session ends.
        let out = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(self.guarded(secret, token, out)))
    }

    type LogsStream = Out<pb::LogsResponse>;

    async fn logs(&self, req: Request<pb::LogsRequest>) -> R<Self::LogsStream> {
        let (p, token, secret) = self.principal_token_of(req.metadata()).await?;
        let r = req.into_inner();
        let kind = SessionKind::Logs {
            follow: r.follow,
            tail: r.tail,
        };
        let (half, slot) = self
            .open(&p, sliver_ref(r.sliver)?, "logs", String::new(), kind)
            .await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let _slot = slot;
            let NodeHalf {
                mut inbound,
                outbound,
            } = half;
            loop {
                tokio::select! {
                    f = inbound.message() => {
                        let m = match f {
                            Ok(Some(pb::SessionFrame { frame: Some(Frame::Stdout(b)) })) => logs_response::Msg::Stdout(b),
                            Ok(Some(pb::SessionFrame { frame: Some(Frame::Stderr(b)) })) => logs_response::Msg::Stderr(b),
                            Ok(Some(pb::SessionFrame { frame: Some(Frame::End(e)) })) => {
                                if let Some(s) = end_status(&e) {
                                    let _ = tx.send(Err(s)).await;
                                }
                                break;
                            }
                            Ok(Some(_)) => continue,
                            _ => break,
                        };
                        if tx.send(Ok(pb::LogsResponse { msg: Some(m) })).await.is_err() {
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
            drop(outbound);
        });
        // `logs -f` lasts as long as its token.
        let out = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(self.guarded(secret, token, out)))
    }

    async fn copy_to(&self, req: Request<Streaming<pb::CopyToRequest>>) -> R<pb::CopyToResponse> {
        let (md, _, mut client) = req.into_parts();
        let (p, token, secret) = self.principal_token_of(&md).await?;
        // An upload lasts as long as its token: revoked or expired, it ends unfinished.
        let fails = self.token_fails(secret, token);
        let Some(copy_to_request::Msg::Start(start)) = client.message().await?.and_then(|m| m.msg)
        else {
            return Err(Error::invalid("the first message of an upload must be start").into());
        };
        let path = checked_path(&start.path)?;
        let (half, _slot) = self
            .open(
                &p,
                sliver_ref(start.sliver)?,
                "copy to",
                path.clone(),
                SessionKind::CopyTo(path),
            )
            .await?;
        let NodeHalf {
            mut inbound,
            outbound,
        } = half;
        // Client bytes go to the node as they come; the node's verdict ends the call.
        let pump = tokio::spawn(async move {
            loop {
                match client.message().await {
                    Ok(Some(m)) => {
                        if let Some(copy_to_request::Msg::Data(b)) = m.msg {
                            if outbound.send(frame(Frame::Stdin(b))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    // A client that breaks off mid-upload must not look finished: dropping the
                    // stream without end-of-stdin makes the node abandon the archive.
                    Err(_) => return,
                }
            }
            let _ = outbound.send(frame(Frame::StdinEof(true))).await;
            // Keep the stream open until the node answers.
            outbound.closed().await;
        });
        let verdict = async {
            loop {
                match inbound.message().await {
                    Ok(Some(pb::SessionFrame {
                        frame: Some(Frame::End(e)),
                    })) => break Ok(e),
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        break Err(Status::unavailable("the node closed the session"))
                    }
                }
            }
        };
        let result = tokio::select! {
            r = verdict => r,
            s = fails => Err(s),
        };
        // Aborting drops the stream to the node without end-of-stdin: it abandons the archive.
        pump.abort();
        let end = result?;
        match end_status(&end) {
            Some(s) => Err(s),
            None => Ok(Response::new(pb::CopyToResponse { bytes: end.bytes })),
        }
    }

    type CopyFromStream = Out<pb::CopyFromResponse>;

    async fn copy_from(&self, req: Request<pb::CopyFromRequest>) -> R<Self::CopyFromStream> {
        let (p, token, secret) = self.principal_token_of(req.metadata()).await?;
        let r = req.into_inner();
        let path = checked_path(&r.path)?;
        let (half, slot) = self
            .open(
                &p,
                sliver_ref(r.sliver)?,
                "copy from",
                path.clone(),
                SessionKind::CopyFrom(path),
            )
            .await?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _slot = slot;
            let NodeHalf {
                mut inbound,
                outbound,
            } = half;
            loop {
                tokio::select! {
                    f = inbound.message() => match f {
                        Ok(Some(pb::SessionFrame { frame: Some(Frame::Stdout(b)) })) => {
                            if tx.send(Ok(pb::CopyFromResponse { data: b })).await.is_err() {
                                break;
                            }
                        }
                        Ok(Some(pb::SessionFrame { frame: Some(Frame::End(e)) })) => {
                            if let Some(s) = end_status(&e) {
                                let _ = tx.send(Err(s)).await;
                            }
                            break;
                        }
                        Ok(Some(_)) => continue,
                        _ => {
                            let _ = tx.send(Err(Status::unavailable("the node closed the session"))).await;
                            break;
                        }
                    },
                    _ = tx.closed() => break,
                }
            }
            drop(outbound);
        });
        // A download lasts as long as its token.
        let out = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(self.guarded(secret, token, out)))
    }

    async fn resolve_endpoints(
        &self,
        req: Request<pb::ResolveEndpointsRequest>,
    ) -> R<pb::ResolveEndpointsResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let eps = self.core.resolve_endpoints(&p, &r.slice, &r.port).await?;
        let endpoints = eps
            .into_iter()
            .map(|e| pb::Endpoint {
                index: e.sliver.index,
                sliver: e.sliver.id.clone(),
                node: e.sliver.node.clone(),
                site: e.sliver.site.clone(),
                name: e.name,
                address: e.address,
                port: e.port,
                container_port: e.container_port,
                state: if e.unknown {
                    pb::SliverState::Unknown
                } else {
                    cv::sliver_state(e.sliver.state)
                } as i32,
            })
            .collect();
        Ok(Response::new(pb::ResolveEndpointsResponse { endpoints }))
    }
}

/// An absolute path without NUL bytes; the node resolves it inside the container.
fn checked_path(p: &str) -> Result<String, Status> {
    if !p.starts_with('/') || p.contains('\0') || p.len() > 4096 {
        return Err(Error::invalid(format!("path {p:?} must be absolute")).into());
    }
    Ok(p.to_string())
}

/// Relays an exec both ways until the process ends or either side goes away. Dropping the
/// node's outbound half closes its stream, which makes the node end the process.
async fn relay_exec(
    mut client: Streaming<pb::ExecRequest>,
    half: NodeHalf,
    tx: mpsc::Sender<Result<pb::ExecResponse, Status>>,
    slot: Slot,
) {
    let _slot = slot;
    let NodeHalf {
        mut inbound,
        outbound,
    } = half;
    let mut client_open = true;
    let send = |m| pb::ExecResponse { msg: Some(m) };
    loop {
        tokio::select! {
            m = client.message(), if client_open => match m {
                Ok(Some(pb::ExecRequest { msg: Some(m) })) => {
                    let f = match m {
                        exec_request::Msg::Stdin(b) => Frame::Stdin(b),
                        exec_request::Msg::StdinEof(_) => Frame::StdinEof(true),
                        exec_request::Msg::Resize(s) => Frame::Resize(s),
                        exec_request::Msg::Start(_) => continue,
                    };
                    if outbound.send(frame(f)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(_)) => {}
                // The client finished sending: that is the end of its stdin, not of the call.
                Ok(None) => {
                    client_open = false;
                    let _ = outbound.send(frame(Frame::StdinEof(true))).await;
                }
                Err(_) => break,
            },
            f = inbound.message() => {
                let m = match f {
                    Ok(Some(pb::SessionFrame { frame: Some(Frame::Stdout(b)) })) => exec_response::Msg::Stdout(b),
                    Ok(Some(pb::SessionFrame { frame: Some(Frame::Stderr(b)) })) => exec_response::Msg::Stderr(b),
                    Ok(Some(pb::SessionFrame { frame: Some(Frame::End(e)) })) => {
                        let _ = tx.send(Ok(send(exec_response::Msg::Exit(pb::ExecExit { code: e.exit_code.unwrap_or(-1), message: e.error })))).await;
                        break;
                    }
                    Ok(Some(_)) => continue,
                    _ => {
                        let exit = pb::ExecExit { code: -1, message: "the node closed the session".into() };
                        let _ = tx.send(Ok(send(exec_response::Msg::Exit(exit)))).await;
                        break;
                    }
                };
                if tx.send(Ok(send(m))).await.is_err() {
                    break;
                }
            }
            _ = tx.closed() => break,
        }
    }
    drop(outbound);
}
