//! A scripted slice-service for slicectl's access commands: slice "demo" has three slivers whose
//! file systems are directories, and exec runs the command on this machine with HOSTNAME set to
//! the sliver's name. Served on 127.0.0.1:0 from its own thread, so tests can block on the binary.

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    process::{Command, Output, Stdio},
    time::Duration,
};

use futures::Stream;
use slicebed_proto::v1::{
    self as pb,
    access_service_server::{AccessService, AccessServiceServer},
    exec_request, exec_response,
    slice_service_server::{SliceService, SliceServiceServer},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type R<T> = Result<Response<T>, Status>;
type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub const SITES: [&str; 3] = ["eth", "kaist", "mit"];
/// The request id every command's requests carry (`SLICECTL_REQUEST_ID`); the fake answers
/// without one, so a status error ends with it.
pub const RUN_ID: &str = "fake-run";

#[derive(Clone)]
pub struct Fake {
    root: PathBuf,
}

impl Fake {
    /// The directory standing in for sliver `index`'s file system.
    pub fn fs(&self, index: u32) -> PathBuf {
        self.root.join(format!("sliver-{index}"))
    }

    fn sliver(&self, r: Option<pb::SliverRef>) -> Result<u32, Status> {
        match r {
            Some(r) if r.slice == "demo" && r.index < 3 => Ok(r.index),
            Some(r) => Err(Status::not_found(format!("sliver {}/{}", r.slice, r.index))),
            None => Err(Status::invalid_argument("sliver is required")),
        }
    }

    fn local(&self, index: u32, path: &str) -> PathBuf {
        self.fs(index).join(path.trim_start_matches('/'))
    }
}

fn unimplemented<T>() -> R<T> {
    Err(Status::unimplemented("not in the fake"))
}

#[tonic::async_trait]
impl SliceService for Fake {
    async fn create_slice(&self, _: Request<pb::CreateSliceRequest>) -> R<pb::CreateSliceResponse> {
        unimplemented()
    }
    async fn get_slice(&self, req: Request<pb::GetSliceRequest>) -> R<pb::Slice> {
        if req.get_ref().name != "demo" {
            return Err(Status::not_found(format!("slice {:?}", req.get_ref().name)));
        }
        let slivers = (0..3u32)
            .map(|i| pb::Sliver {
                id: format!("demo-{i}-ab12"),
                slice: "demo".into(),
                index: i,
                node: format!("node-{}", SITES[i as usize]),
                site: SITES[i as usize].into(),
                state: pb::SliverState::Running as i32,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(pb::Slice {
            name: "demo".into(),
            slivers,
            ..Default::default()
        }))
    }
    async fn list_slices(&self, _: Request<pb::ListSlicesRequest>) -> R<pb::ListSlicesResponse> {
        unimplemented()
    }
    async fn renew_slice(&self, _: Request<pb::RenewSliceRequest>) -> R<pb::RenewSliceResponse> {
        unimplemented()
    }
    async fn delete_slice(&self, _: Request<pb::DeleteSliceRequest>) -> R<pb::DeleteSliceResponse> {
        unimplemented()
    }
    async fn list_events(&self, _: Request<pb::ListEventsRequest>) -> R<pb::ListEventsResponse> {
        unimplemented()
    }
    async fn list_resources(
        &self,
        _: Request<pb::ListResourcesRequest>,
    ) -> R<pb::ListResourcesResponse> {
        unimplemented()
    }
    async fn who_am_i(&self, _: Request<pb::WhoAmIRequest>) -> R<pb::WhoAmIResponse> {
        unimplemented()
    }
    type WatchEventsStream = Out<pb::Event>;
    async fn watch_events(&self, _: Request<pb::WatchEventsRequest>) -> R<Self::WatchEventsStream> {
        unimplemented()
    }
    async fn list_slice_usage(
        &self,
        _: Request<pb::ListSliceUsageRequest>,
    ) -> R<pb::ListSliceUsageResponse> {
        unimplemented()
    }
    async fn get_slice_usage(&self, _: Request<pb::GetSliceUsageRequest>) -> R<pb::SliceUsage> {
        unimplemented()
    }
    async fn list_node_usage(
        &self,
        _: Request<pb::ListNodeUsageRequest>,
    ) -> R<pb::ListNodeUsageResponse> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl AccessService for Fake {
    type ExecStream = Out<pb::ExecResponse>;

    async fn exec(&self, req: Request<Streaming<pb::ExecRequest>>) -> R<Self::ExecStream> {
        let mut input = req.into_inner();
        let Some(exec_request::Msg::Start(start)) = input.message().await?.and_then(|m| m.msg)
        else {
            return Err(Status::invalid_argument("start first"));
        };
        let index = self.sliver(start.sliver)?;
        let mut child = tokio::process::Command::new(&start.command[0])
            .args(&start.command[1..])
            .env("HOSTNAME", format!("demo-{index}"))
            .env("FAKE_TTY", if start.tty { "1" } else { "0" })
            .envs(start.env)
            .current_dir(self.fs(index))
            .stdin(if start.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The call going away ends the process, as the real service promises.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let (tx, rx) = mpsc::channel(16);
        let mut stdin = child.stdin.take();
        tokio::spawn(async move {
            while let Ok(Some(m)) = input.message().await {
                match (m.msg, &mut stdin) {
                    (Some(exec_request::Msg::Stdin(b)), Some(s)) => {
                        let _ = s.write_all(&b).await;
                    }
                    (Some(exec_request::Msg::StdinEof(_)), _) => stdin = None,
                    _ => {}
                }
            }
        });
        let pipe = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>, err: bool| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let b = buf[..n].to_vec();
                    let m = if err {
                        exec_response::Msg::Stderr(b)
                    } else {
                        exec_response::Msg::Stdout(b)
                    };
                    if tx
                        .send(Ok(pb::ExecResponse { msg: Some(m) }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        };
        let out = pipe(Box::new(child.stdout.take().unwrap()), false);
        let err = pipe(Box::new(child.stderr.take().unwrap()), true);
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = tx.closed() => return,
            };
            let _ = (out.await, err.await);
            let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
            let exit = pb::ExecExit {
                code,
                message: String::new(),
            };
            let _ = tx
                .send(Ok(pb::ExecResponse {
                    msg: Some(exec_response::Msg::Exit(exit)),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type LogsStream = Out<pb::LogsResponse>;

    async fn logs(&self, req: Request<pb::LogsRequest>) -> R<Self::LogsStream> {
        let r = req.into_inner();
        let index = self.sliver(r.sliver)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let first = if r.tail > 0 { 10 - r.tail.min(10) } else { 0 };
            let mut n = first;
            loop {
                if n >= 10 && !r.follow {
                    break;
                }
                let m = pb::logs_response::Msg::Stdout(format!("log {index} line {n}\n").into());
                if tx
                    .send(Ok(pb::LogsResponse { msg: Some(m) }))
                    .await
                    .is_err()
                {
                    break;
                }
                n += 1;
                if n >= 10 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn copy_to(&self, req: Request<Streaming<pb::CopyToRequest>>) -> R<pb::CopyToResponse> {
        let mut input = req.into_inner();
        let Some(pb::copy_to_request::Msg::Start(start)) =
            input.message().await?.and_then(|m| m.msg)
        else {
            return Err(Status::invalid_argument("start first"));
        };
        let index = self.sliver(start.sliver)?;
        let dir = self.local(index, &start.path);
        // Spooled to a file, as a node would stream it to Docker: never all in memory.
        let spool = self.root.join(format!("spool-{index}.tar"));
        let mut f = tokio::fs::File::create(&spool).await?;
        let mut bytes = 0u64;
        while let Some(m) = input.message().await? {
            if let Some(pb::copy_to_request::Msg::Data(b)) = m.msg {
                assert!(b.len() <= 1 << 20, "at most 1 MiB per message");
                bytes += b.len() as u64;
                f.write_all(&b).await?;
            }
        }
        f.flush().await?;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tar::Archive::new(std::fs::File::open(&spool)?).unpack(&dir)
        })
        .await
        .unwrap()
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::CopyToResponse { bytes }))
    }

    type CopyFromStream = Out<pb::CopyFromResponse>;

    async fn copy_from(&self, req: Request<pb::CopyFromRequest>) -> R<Self::CopyFromStream> {
        let r = req.into_inner();
        let index = self.sliver(r.sliver)?;
        let src = self.local(index, &r.path);
        if !src.exists() {
            return Err(Status::failed_precondition(format!(
                "{} does not exist",
                r.path
            )));
        }
        let spool = self.root.join(format!("out-{index}.tar"));
        let tar_path = spool.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut b = tar::Builder::new(std::fs::File::create(&tar_path)?);
            let name = src.file_name().unwrap();
            if src.is_dir() {
                b.append_dir_all(name, &src)?;
            } else {
                b.append_path_with_name(&src, name)?;
            }
            b.into_inner()?.flush()
        })
        .await
        .unwrap()?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut f = tokio::fs::File::open(&spool).await.unwrap();
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = f.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                let data = buf[..n].to_vec();
                if tx.send(Ok(pb::CopyFromResponse { data })).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resolve_endpoints(
        &self,
        req: Request<pb::ResolveEndpointsRequest>,
    ) -> R<pb::ResolveEndpointsResponse> {
        let r = req.into_inner();
        if r.slice != "demo" {
            return Err(Status::not_found(format!("slice {:?}", r.slice)));
        }
        let endpoints = (0..3u32)
            .map(|i| pb::Endpoint {
                index: i,
                sliver: format!("demo-{i}-ab12"),
                node: format!("node-{}", SITES[i as usize]),
                site: SITES[i as usize].into(),
                name: "http".into(),
                address: "127.0.0.1".into(),
                port: 30100 + i,
                container_port: 8080,
                state: pb::SliverState::Running as i32,
            })
            .collect();
        Ok(Response::new(pb::ResolveEndpointsResponse { endpoints }))
    }
}

/// A fake service on its own thread and runtime, so tests can block on the binary.
pub struct Service {
    pub addr: SocketAddr,
    pub fake: Fake,
    _dir: tempfile::TempDir,
}

pub fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake {
        root: dir.path().to_path_buf(),
    };
    for i in 0..3 {
        std::fs::create_dir_all(fake.fs(i)).unwrap();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = fake.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(SliceServiceServer::new(served.clone()))
                .add_service(AccessServiceServer::new(served))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    Service {
        addr,
        fake,
        _dir: dir,
    }
}

impl Service {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_slicectl"));
        c.args(["--server", &self.addr.to_string(), "--token", "t"])
            .args(args)
            .env("SLICECTL_CONFIG", "/nonexistent/slicectl.toml")
            // The fake answers without an id, so errors show the one every request was sent with.
            .env("SLICECTL_REQUEST_ID", RUN_ID)
            .env_remove("SLICECTL_SERVER")
            .env_remove("SLICECTL_TOKEN");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}
