//! The node's side of `NodeService/Session` over real gRPC: a scripted service asks for a
//! session, and the node must dial back with its credential and the session id as first frame,
//! deliver output and `SessionEnd`, and kill the exec when the service drops the stream.

use std::time::Duration;

use node_manager::access::{Access, Launcher};
use node_manager::connect::{channel, node_client};
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use slicebed_proto::v1::open_session::Kind;
use slicebed_proto::v1::session_frame::Frame;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// A session stream as the scripted service sees it.
struct Arrived {
    authorization: String,
    inbound: Streaming<pb::SessionFrame>,
    /// Held open: dropping it ends the node's side, as when a client goes away.
    _outbound: mpsc::Sender<Result<pb::SessionFrame, Status>>,
}

struct Service(mpsc::Sender<Arrived>);

type Out<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl NodeService for Service {
    async fn enroll(
        &self,
        _: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        Err(Status::unimplemented("enroll"))
    }
    type FetchBlobStream = Out<pb::BlobChunk>;
    async fn fetch_blob(
        &self,
        _: Request<pb::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        Err(Status::unimplemented("fetch_blob"))
    }
    type ControlStream = Out<pb::ServiceMessage>;
    async fn control(
        &self,
        _: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        Err(Status::unimplemented("control"))
    }
    type SessionStream = Out<pb::SessionFrame>;
    async fn session(
        &self,
        req: Request<Streaming<pb::SessionFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let authorization = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (tx, rx) = mpsc::channel(16);
        let arrived = Arrived {
            authorization,
            inbound: req.into_inner(),
            _outbound: tx,
        };
        self.0
            .send(arrived)
            .await
            .map_err(|_| Status::internal("test gone"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn next(a: &mut Arrived) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(20), a.inbound.message())
        .await
        .expect("no frame within 20 s")
        .ok()
        .flatten()
        .and_then(|f| f.frame)
}

#[tokio::test]
async fn serves_exec_over_grpc_and_kills_when_the_stream_drops() {
    let node = format!("nmacc-grpc-{}", std::process::id());
    let Ok(rt) = DockerRuntime::connect(None, node).await else {
        return;
    };
    if rt.ping().await.is_err()
        || node_manager::image::ensure(&rt, node_manager::image::DEFAULT_TAG, false)
            .await
            .is_err()
    {
        eprintln!("skipping: no Docker engine or base image");
        return;
    }
    let spec = node_manager::domain::SliverSpec {
        sliver_id: "g0".into(),
        slice: "grpc".into(),
        index: 0,
        image: node_manager::image::DEFAULT_TAG.into(),
        command: vec!["sleep".into(), "300".into()],
        env: Default::default(),
        resources: node_manager::domain::Resources {
            cpu_millis: 200,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: node_manager::domain::RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    };
    rt.ensure_network("grpc").await.unwrap();
    let container = rt.create_and_start(&spec).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrivals_tx, mut arrivals) = mpsc::channel(4);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NodeServiceServer::new(Service(arrivals_tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let client = node_client(channel(&url, None, None).await.unwrap(), "sbn_secret").unwrap();
    let launcher = Launcher::new(client, Some(Access::from_runtime(&rt)));
    let open = |id: &str, cmd: &[&str]| pb::OpenSession {
        session_id: id.into(),
        sliver_id: "g0".into(),
        kind: Some(Kind::Exec(pb::ExecStart {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        idle_timeout: None,
    };

    launcher.spawn(open("sess-1", &["echo", "hi"]));
    let mut a = arrivals.recv().await.unwrap();
    assert_eq!(a.authorization, "Bearer sbn_secret");
    assert_eq!(next(&mut a).await, Some(Frame::SessionId("sess-1".into())));
    assert_eq!(next(&mut a).await, Some(Frame::Stdout(b"hi\n".to_vec())));
    match next(&mut a).await {
        Some(Frame::End(e)) => assert_eq!(e.exit_code, Some(0)),
        other => panic!("expected the end, got {other:?}"),
    }
    // The node half-closed after its end and waits for the service to close its side.
    assert_eq!(next(&mut a).await, None);
    drop(a);

    launcher.spawn(open("sess-2", &["sleep", "4242"]));
    let mut a = arrivals.recv().await.unwrap();
    assert_eq!(next(&mut a).await, Some(Frame::SessionId("sess-2".into())));
    let running = || async {
        let top = rt
            .docker()
            .top_processes(&container, None::<bollard::query_parameters::TopOptions>)
            .await
            .unwrap();
        top.processes
            .unwrap_or_default()
            .iter()
            .any(|p| p.iter().any(|c| c.contains("4242")))
    };
    for _ in 0..100 {
        if running().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running().await, "exec never started");
    drop(a); // the service drops the stream: the client went away
    let mut gone = false;
    for _ in 0..100 {
        if !running().await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the exec outlived its session");
    rt.remove(&container).await.unwrap();
    rt.remove_network("grpc").await.unwrap();
}
