//! A node speaking the real node API over gRPC, driven by the test instead of Docker:
//! it enrolls with a one-time token and a CSR, opens the control channel over mutual TLS
//! with the certificate it got, heartbeats, and reports whatever states the test tells it
//! to. Control-plane tests use it; Docker tests use the real node-manager.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::{Clients, Service};

/// A node's key and client certificate (PEM).
#[derive(Debug, Clone)]
pub struct NodeCredential {
    pub key_pem: String,
    pub cert_pem: String,
}

/// A fresh key and a CSR for it naming `name`: (key PEM, CSR PEM).
pub fn key_and_csr(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let csr = p.serialize_request(&key).expect("csr").pem().expect("pem");
    (key.serialize_pem(), csr)
}

/// Enrolls `req` (its CSR replaced by one for a fresh key) with an enrollment token; returns
/// the node's credential.
pub async fn enroll(
    svc: &Service,
    token: &str,
    mut req: pb::EnrollRequest,
) -> Result<NodeCredential, tonic::Status> {
    let (key_pem, csr) = key_and_csr(&req.name);
    req.csr_pem = csr;
    let resp = Clients::new(svc, Some(token))
        .await
        .node
        .clone()
        .enroll(req)
        .await?
        .into_inner();
    Ok(NodeCredential {
        key_pem,
        cert_pem: resp.certificate.expect("a certificate").certificate_pem,
    })
}

/// An enrolled node with an open control channel.
pub struct TestNode {
    pub name: String,
    pub credential: NodeCredential,
    tx: mpsc::Sender<pb::NodeMessage>,
    rx: mpsc::Receiver<pb::ServiceMessage>,
    heartbeat: tokio::task::JoinHandle<()>,
    engine: Arc<Mutex<Option<pb::EngineStatus>>>,
}

/// What a test node reports at enrollment and connect.
pub fn enroll_request(
    name: &str,
    cpu_millis: i64,
    memory_bytes: i64,
    ports: (u32, u32),
) -> pb::EnrollRequest {
    pb::EnrollRequest {
        name: name.into(),
        address: "127.0.0.1".into(),
        capacity: Some(pb::Resources {
            cpu_millis,
            memory_bytes,
            disk_bytes: 100 << 30,
        }),
        port_range: Some(pb::PortRange {
            first: ports.0,
            last: ports.1,
        }),
        labels: Default::default(),
        agent_version: "test-node".into(),
        csr_pem: key_and_csr(name).1,
        cluster: false,
    }
}

impl TestNode {
    /// Creates an enrollment token for `site` as admin, enrolls, connects.
    pub async fn join(
        svc: &Service,
        site: &str,
        name: &str,
        cpu_millis: i64,
        memory_bytes: i64,
    ) -> Self {
        let admin = Clients::admin(svc).await;
        let tok = crate::nm::enrollment_token(&admin, site).await;
        let req = enroll_request(name, cpu_millis, memory_bytes, (30000, 30999));
        let cred = enroll(svc, &tok, req).await.expect("enroll");
        Self::connect(svc, name, &cred, cpu_millis, memory_bytes)
            .await
            .expect("connect")
    }

    /// Opens the control channel with a credential. A refusal because the service has not
    /// yet seen this node's previous stream end (FAILED_PRECONDITION) is retried for a while.
    pub async fn connect(
        svc: &Service,
        name: &str,
        credential: &NodeCredential,
        cpu_millis: i64,
        memory_bytes: i64,
    ) -> Result<Self, tonic::Status> {
        let start = std::time::Instant::now();
        loop {
            match Self::connect_once(svc, name, credential, cpu_millis, memory_bytes).await {
                Err(s)
                    if s.code() == tonic::Code::FailedPrecondition
                        && start.elapsed() < Duration::from_secs(10) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r,
            }
        }
    }

    /// Opens the control channel once, with what the node says in its Hello.
    pub async fn connect_once(
        svc: &Service,
        name: &str,
        credential: &NodeCredential,
        cpu_millis: i64,
        memory_bytes: i64,
    ) -> Result<Self, tonic::Status> {
        Self::connect_with(svc, name, credential, hello(cpu_millis, memory_bytes)).await
    }

    /// Opens the control channel once, saying `hello`.
    pub async fn connect_with(
        svc: &Service,
        name: &str,
        credential: &NodeCredential,
        hello: pb::Hello,
    ) -> Result<Self, tonic::Status> {
        let c = Clients::with_identity(svc, None, credential)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
        let (tx, out) = mpsc::channel(256);
        tx.send(pb::NodeMessage {
            msg: Some(Msg::Hello(hello)),
        })
        .await
        .unwrap();
        let mut inbound = c
            .node
            .clone()
            .control(ReceiverStream::new(out))
            .await?
            .into_inner();
        let (in_tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(Ok(m)) = inbound.next().await {
                if in_tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        let hb_tx = tx.clone();
        let engine: Arc<Mutex<Option<pb::EngineStatus>>> = Arc::default();
        let hb_engine = engine.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let hb = pb::Heartbeat {
                    usage: None,
                    running: 0,
                    engine: hb_engine.lock().unwrap().clone(),
                    slivers: Vec::new(),
                };
                if hb_tx
                    .send(pb::NodeMessage {
                        msg: Some(Msg::Heartbeat(hb)),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Self {
            name: name.into(),
            credential: credential.clone(),
            tx,
            rx,
            heartbeat,
            engine,
        })
    }

    /// Sends any message on the control channel.
    pub async fn send(&self, m: Msg) {
        self.tx
            .send(pb::NodeMessage { msg: Some(m) })
            .await
            .expect("control channel open");
    }

    /// From now on heartbeats say the container engine does not answer (`Some(words)`) or
    /// answers again (`None`); one is sent at once, as a node manager does.
    pub async fn set_engine(&self, unavailable: Option<&str>) {
        let status = unavailable.map(|m| pb::EngineStatus {
            unavailable: true,
            message: m.into(),
            since: Some(std::time::SystemTime::now().into()),
        });
        *self.engine.lock().unwrap() = status.clone();
        let hb = pb::Heartbeat {
            usage: None,
            running: 0,
            engine: status,
            slivers: Vec::new(),
        };
        self.tx
            .send(pb::NodeMessage {
                msg: Some(Msg::Heartbeat(hb)),
            })
            .await
            .expect("control channel open");
    }

    /// Reports a sliver state.
    pub async fn report(&self, sliver_id: &str, state: pb::SliverState, message: &str) {
        let s = pb::SliverStatus {
            sliver_id: sliver_id.into(),
            state: state as i32,
            message: message.into(),
            exit_code: None,
            container_id: String::new(),
            observed_at: None,
            restarts: 0,
        };
        self.tx
            .send(pb::NodeMessage {
                msg: Some(Msg::Status(s)),
            })
            .await
            .expect("control channel open");
    }

    /// Next message from the service, or None after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<pb::ServiceMessage> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The id in the next `remove` the service sends, skipping other messages; panics if
    /// none comes within `timeout` of each message.
    pub async fn next_remove(&mut self, timeout: Duration) -> String {
        loop {
            match self.recv(timeout).await.expect("a removal").msg {
                Some(pb::service_message::Msg::Remove(id)) => return id,
                _ => continue,
            }
        }
    }

    /// Stops heartbeating and closes the channel (the node goes silent).
    pub fn disconnect(self) {
        self.heartbeat.abort();
        drop(self.tx);
    }
}

/// What a test node says in its Hello.
pub fn hello(cpu_millis: i64, memory_bytes: i64) -> pb::Hello {
    pb::Hello {
        agent_version: "test-node".into(),
        capacity: Some(pb::Resources {
            cpu_millis,
            memory_bytes,
            disk_bytes: 100 << 30,
        }),
        port_range: Some(pb::PortRange {
            first: 30000,
            last: 30999,
        }),
        address: "127.0.0.1".into(),
        labels: Default::default(),
        observed: vec![],
        engine: None,
        cordoned: false,
    }
}

/// Opens the control channel presenting no client certificate (only `token`, if any) and
/// says Hello; returns what the service answered first.
pub async fn control_without_certificate(
    svc: &Service,
    token: Option<&str>,
) -> Result<pb::ServiceMessage, tonic::Status> {
    let c = Clients::new(svc, token).await;
    let (tx, out) = mpsc::channel(4);
    tx.send(pb::NodeMessage {
        msg: Some(Msg::Hello(hello(1000, 1 << 30))),
    })
    .await
    .unwrap();
    let mut inbound = c
        .node
        .clone()
        .control(ReceiverStream::new(out))
        .await?
        .into_inner();
    inbound
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended"))
}
