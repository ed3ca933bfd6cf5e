//! A node speaking the real node API over gRPC, driven by the test instead of Docker:
//! it enrolls with a one-time token, opens the control channel, heartbeats, and reports
//! whatever states the test tells it to. Control-plane tests use it; Docker tests use
//! the real node-manager.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::{Clients, Service};

/// An enrolled node with an open control channel.
pub struct TestNode {
    pub name: String,
    pub credential: String,
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
        let tok = admin
            .admin
            .clone()
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                site: site.into(),
                ttl: None,
            })
            .await
            .expect("enrollment token")
            .into_inner()
            .token;
        let enr = Clients::new(svc, Some(&tok)).await;
        let resp = enr
            .node
            .clone()
            .enroll(enroll_request(
                name,
                cpu_millis,
                memory_bytes,
                (30000, 30999),
            ))
            .await
            .expect("enroll")
            .into_inner();
        Self::connect(svc, name, &resp.credential, cpu_millis, memory_bytes)
            .await
            .expect("connect")
    }

    /// Opens the control channel with a credential.
    pub async fn connect(
        svc: &Service,
        name: &str,
        credential: &str,
        cpu_millis: i64,
        memory_bytes: i64,
    ) -> Result<Self, tonic::Status> {
        let c = Clients::new(svc, Some(credential)).await;
        let (tx, out) = mpsc::channel(256);
        let hello = pb::Hello {
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
        };
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
            credential: credential.into(),
            tx,
            rx,
            heartbeat,
            engine,
        })
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
