//! `slicebed.v1.NodeService` handlers: enrollment and the node-initiated control channel.
//!
//! Control and Session authenticate by the client certificate of the TLS connection (mutual
//! TLS), never by a bearer token: `peer.rs` reads it (and a cluster agent's member), `Core::speaker`
//! checks it.

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

use super::peer::{peer, peer_node};
use super::{convert as cv, Api};
use crate::core::{Core, NodeHello, ObservedStatus, Speaker};
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

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn certificate(core: &Core, c: &crate::pki::IssuedCert) -> pb::NodeCertificate {
    pb::NodeCertificate {
        certificate_pem: c.pem.clone(),
        ca_certificate_pem: core
            .ca
            .get()
            .map(|ca| ca.cert_pem().to_string())
            .unwrap_or_default(),
        issued_at: Some(timestamp(c.issued_at)),
        expires_at: Some(timestamp(c.expires_at)),
    }
}

fn ca(core: &Core) -> Result<&crate::pki::Ca, Status> {
    core.ca
        .get()
        .map(|c| &**c)
        .ok_or_else(|| Status::unavailable("this service has no certificate authority"))
}

fn peer_addr(ext: &tonic::Extensions) -> String {
    use tonic::transport::server::TlsConnectInfo;
    ext.get::<TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|t| t.get_ref().remote_addr())
        .map_or_else(|| "an unknown address".into(), |a| a.to_string())
}

#[tonic::async_trait]
impl NodeService for Api {
    async fn enroll(&self, req: Request<pb::EnrollRequest>) -> R<pb::EnrollResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        if r.csr_pem.is_empty() {
            return Err(Error::invalid(
                "csr_pem is required: nodes authenticate with a client certificate (update the node manager)",
            )
            .into());
        }
        let range = r.port_range.unwrap_or_default();
        let ca = ca(&self.core)?;
        let (now, ttl) = (self.core.now_ms(), self.core.cfg.node_cert_ttl);
        if r.cluster {
            let (k, cert) = self
                .core
                .enroll_cluster(&p, &r.name, (range.first, range.last), |name| {
                    ca.issue_cluster(name, &r.csr_pem, now, ttl)
                })
                .await?;
            tracing::info!(cluster = %k.name, site = %k.site, serial = %cert.serial, "cluster enrolled");
            return Ok(Response::new(pb::EnrollResponse {
                certificate: Some(certificate(&self.core, &cert)),
                node: k.name,
                site: k.site,
                credential: String::new(),
                cluster: true,
            }));
        }
        let hello = NodeHello {
            name: r.name,
            address: r.address,
            capacity: cv::res_in(r.capacity),
            port_first: range.first,
            port_last: range.last,
            labels: r.labels.into_iter().collect(),
            agent_version: r.agent_version,
        };
        let (node, cert) = self
            .core
            .enroll(&p, hello, |name| ca.issue_node(name, &r.csr_pem, now, ttl))
            .await?;
        tracing::info!(node = %node.name, site = %node.site, serial = %cert.serial, "node enrolled");
        Ok(Response::new(pb::EnrollResponse {
            certificate: Some(certificate(&self.core, &cert)),
            node: node.name,
            site: node.site,
            credential: String::new(),
            cluster: false,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(&self, req: Request<Streaming<pb::SessionFrame>>) -> R<SessionStream> {
        let (meta, ext, mut inbound) = req.into_parts();
        let name = peer_node(&self.core, &meta, &ext).await?;
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no session id within 10s"))??;
        let Some(pb::session_frame::Frame::SessionId(id)) = first.and_then(|f| f.frame) else {
            return Err(Error::invalid("the first frame of a session must be its id").into());
        };
        // Registered before the claim, so a revocation from then on ends this stream.
        let cut_off = self.core.hub.cut_off(&name);
        let (tx, rx) = mpsc::channel(64);
        self.sessions.claim(
            &id,
            &name,
            super::sessions::NodeHalf {
                inbound,
                outbound: tx,
            },
        )?;
        // A revoked node's sessions end with it: its stream ends, so it stops serving them.
        Ok(Response::new(Box::pin(futures::StreamExt::take_until(
            ReceiverStream::new(rx),
            cut_off,
        )) as SessionStream))
    }

    type FetchBlobStream = super::fetch::FetchStream;

    async fn fetch_blob(&self, req: Request<pb::FetchBlobRequest>) -> R<Self::FetchBlobStream> {
        super::fetch::fetch_blob(self, req).await
    }

    type ControlStream = ControlStream;

    async fn control(&self, req: Request<Streaming<pb::NodeMessage>>) -> R<ControlStream> {
        let (meta, ext, mut inbound) = req.into_parts();
        let (who, cert) = peer(&self.core, &meta, &ext).await?;
        let Speaker {
            node: name,
            cluster,
            existing,
        } = who;
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
        if let (Some(c), None) = (&cluster, &existing) {
            self.core.member_joined(c, &name, hello.clone()).await?;
        }

        // Register before reading the desired set, so a change committed in between is
        // queued behind the full set rather than lost.
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<NodeCommand>(4096);
        let Some(conn_id) = self.core.hub.connect_exclusive(&name, cmd_tx) else {
            let from = peer_addr(&ext);
            tracing::warn!(node = %name, %from, "second control channel refused");
            self.core.second_channel_refused(&name, &from).await?;
            return Err(Error::Precondition(format!(
                "node {name} already has an open control channel; a second one is refused \
                 (is another node manager running with this node's identity?)"
            ))
            .into());
        };
        let connected = async {
            let (n, desired) = self.core.node_connected(&name, hello, seen, engine).await?;
            let admin = match &cluster {
                Some(c) => Some(self.core.member_cordoned(c, &name, h.cordoned).await?),
                None => None,
            };
            Ok::<_, Error>((n, desired, admin))
        };
        let (n, desired, admin) = match connected.await {
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
            site: n.site,
            heartbeat_interval: Some(cv::pb_duration(self.core.cfg.heartbeat_interval)),
        };
        let set = pb::DesiredSet {
            slivers: desired
                .iter()
                .map(|(s, v)| cv::desired(s, v, self.core.pull_issuer()))
                .collect(),
        };
        // Fresh channel with room: these cannot fail.
        let _ = out_tx.try_send(Ok(msg(ServiceMsg::Welcome(welcome))));
        let _ = out_tx.try_send(Ok(msg(ServiceMsg::Desired(set))));
        // A member's agent mirrors the node's administrative state as a cordon.
        if let Some(s) = admin {
            let cordon = s != crate::model::AdminState::Active;
            let _ = out_tx.try_send(Ok(msg(ServiceMsg::Admin(pb::NodeAdmin { cordon }))));
        }

        let core = self.core.clone();
        // The TLS handshake checked the certificate once; the stream ends when it expires, so
        // the node comes back with its renewed one.
        let expires = cert
            .expires_at
            .saturating_sub(self.core.now_ms())
            .clamp(0, 10 * 365 * 86_400_000);
        let expiry = tokio::time::sleep(Duration::from_millis(expires as u64));
        tokio::spawn(async move {
            tokio::pin!(expiry);
            loop {
                tokio::select! {
                    _ = &mut expiry => {
                        tracing::info!(node = %name, "client certificate expired; closing its control channel");
                        break;
                    }
                    cmd = cmd_rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        let m = match cmd {
                            NodeCommand::Upsert(b) => ServiceMsg::Upsert(cv::desired(&b.0, &b.1, core.pull_issuer())),
                            NodeCommand::Remove(id) => ServiceMsg::Remove(id),
                            NodeCommand::OpenSession(r) => ServiceMsg::OpenSession(cv::open_session(&r)),
                            NodeCommand::Admin { cordon } => ServiceMsg::Admin(pb::NodeAdmin { cordon }),
                        };
                        if out_tx.send(Ok(msg(m))).await.is_err() {
                            break;
                        }
                    }
                    m = inbound.next() => {
                        match m {
                            Some(Ok(m)) => match handle(&core, &name, cluster.as_deref(), m).await {
                                Flow::Continue => {}
                                Flow::Send(m) => {
                                    if out_tx.send(Ok(msg(*m))).await.is_err() {
                                        break;
                                    }
                                }
                                Flow::Stop(status) => {
                                    let _ = out_tx.send(Err(status)).await;
                                    break;
                                }
                            },
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

/// What the control loop does after a node message.
enum Flow {
    Continue,
    Send(Box<ServiceMsg>),
    Stop(Status),
}

async fn handle(core: &Core, node: &str, cluster: Option<&str>, m: pb::NodeMessage) -> Flow {
    match m.msg {
        Some(NodeMsg::Renew(r)) => {
            let Some(ca) = core.ca.get() else {
                return Flow::Continue;
            };
            let (now, ttl) = (core.now_ms(), core.cfg.node_cert_ttl);
            // A member's request renews its cluster's certificate, never a node's.
            let renewed = match cluster {
                Some(c) => {
                    core.renew_cluster_cert(c, |k| ca.issue_cluster(k, &r.csr_pem, now, ttl))
                        .await
                }
                None => {
                    core.renew_node_cert(node, |n| ca.issue_node(n, &r.csr_pem, now, ttl))
                        .await
                }
            };
            match renewed {
                Ok(c) => {
                    return Flow::Send(Box::new(ServiceMsg::Certificate(certificate(core, &c))))
                }
                Err(e @ Error::Unauthenticated(_)) => return Flow::Stop(e.into()),
                Err(e) => tracing::warn!(node, error = %e, "certificate renewal failed"),
            }
        }
        Some(NodeMsg::Heartbeat(hb)) => {
            core.hub.touch(node, Some(cv::res_in(hb.usage)));
            if let Err(e) = core.engine_reported(node, engine_down(hb.engine)).await {
                tracing::error!(node, error = %e, "recording engine health failed");
            }
            if let Err(e) = core
                .record_usage(node, super::usage::samples_in(hb.slivers))
                .await
            {
                tracing::error!(node, error = %e, "recording sliver usage failed");
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
        Some(NodeMsg::Cordon(c)) => match cluster {
            Some(k) => {
                if let Err(e) = core.member_cordoned(k, node, c.cordoned).await {
                    tracing::error!(node, error = %e, "recording a cordon failed");
                }
            }
            None => tracing::warn!(node, "a plain node reported a cordon; ignored"),
        },
        Some(NodeMsg::Leave(_)) => match cluster {
            Some(k) => match core.member_left(k, node).await {
                Ok(removed) => tracing::info!(node, removed, "cluster member left"),
                Err(e) => tracing::error!(node, error = %e, "recording a member leaving failed"),
            },
            None => tracing::warn!(node, "a plain node said Leave; ignored"),
        },
        Some(NodeMsg::Hello(_)) => tracing::warn!(node, "duplicate Hello ignored"),
        None => {}
    }
    Flow::Continue
}
