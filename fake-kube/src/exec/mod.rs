//! `.../pods/NAME/exec` over websockets with the `v5.channel.k8s.io` / `v4.channel.k8s.io`
//! subprotocols kube and kubectl speak: channel 0 stdin, 1 stdout, 2 stderr, 3 the final `Status`
//! (exit code), 255 (v5) closing stdin.
//!
//! The command runs with `docker exec` in the container [`docker::Docker`] keeps for the Pod —
//! a real process in a real container of the Pod's image, never on the host. Exec is off unless
//! the fake was started with it (`Config::docker_exec`). `tty=true` is accepted but no terminal
//! is allocated, and resize messages (channel 4) are ignored.

pub mod docker;

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role};
use tokio_tungstenite::WebSocketStream;

use crate::http::{error, Body};
use crate::kinds;
use crate::kubelet::sim::Stage;
use crate::ops;
use crate::state::Shared;
use crate::status::{ApiError, Result};

struct Params {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
}

fn params(raw_query: &str) -> Params {
    let mut p = Params {
        command: vec![],
        container: None,
        stdin: false,
    };
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "command" => p.command.push(v.into_owned()),
            "container" => p.container = Some(v.into_owned()),
            "stdin" => p.stdin = v == "true" || v == "1",
            _ => {}
        }
    }
    p
}

/// The Pod's container to exec into, checked to be running.
fn target(shared: &Shared, ns: &str, name: &str, p: &Params) -> Result<docker::Spec> {
    let store = shared.store.lock().expect("store lock");
    let pod = ops::get(&store, kinds::pods(), ns, name)?;
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c = match &p.container {
        Some(want) => containers.iter().find(|c| c["name"].as_str() == Some(want)),
        None if containers.len() == 1 => containers.first(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            )))
        }
    };
    let Some(c) = c else {
        let want = p.container.clone().unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "container {want} is not valid for pod {name}"
        )));
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let running = matches!(
        shared
            .sim
            .lock()
            .expect("sim lock")
            .pods
            .get(&uid)
            .map(|s| &s.stage),
        Some(Stage::Running { .. })
    );
    if !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{}\")",
            c["name"].as_str().unwrap_or("")
        )));
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(docker::Spec {
        uid,
        pod: format!("{ns}/{name}"),
        image: c["image"].as_str().unwrap_or("").to_string(),
        command: strings(&c["command"]),
        args: strings(&c["args"]),
    })
}

pub async fn serve(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    ns: String,
    name: String,
) -> Response<Body> {
    let Some(dock) = shared.docker.clone() else {
        return error(&ApiError::bad_request(
            "exec is not enabled on this fake API server (start it with --docker-exec / Config::docker_exec)",
        ));
    };
    let p = params(req.uri().query().unwrap_or(""));
    if p.command.is_empty() {
        return error(&ApiError::bad_request(
            "you must specify at least 1 command",
        ));
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let key = header("sec-websocket-key");
    if !header("upgrade").eq_ignore_ascii_case("websocket") || key.is_empty() {
        return error(&ApiError::bad_request("exec needs a websocket upgrade"));
    }
    let offered = header("sec-websocket-protocol");
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.contains(p))
    else {
        return error(&ApiError::bad_request(
            "exec needs the v5.channel.k8s.io or v4.channel.k8s.io subprotocol",
        ));
    };
    let spec = match target(&shared, &ns, &name, &p) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let container = match dock.container_for(&spec).await {
        Ok(c) => c,
        Err(m) => return error(&ApiError::new(500, "InternalError", m)),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run(ws, container, p).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", protocol)
        .body(Empty::new().map_err(|e| match e {}).boxed_unsync())
        .expect("static response parts are valid")
}

async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let mut frame = Vec::with_capacity(n + 1);
        frame.push(channel);
        frame.extend_from_slice(&buf[..n]);
        if tx.send(Message::Binary(Bytes::from(frame))).await.is_err() {
            return;
        }
    }
}

async fn run<S>(ws: WebSocketStream<S>, container: String, p: Params)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // A normal-closure code: Go clients (kubectl) treat a close without one as an error.
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(normal))).await;
        let _ = sink.close().await;
    });
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("exec");
    if p.stdin {
        cmd.arg("-i");
    }
    cmd.arg(&container).args(&p.command).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let st = json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "message": format!("running docker exec: {e}")});
            let _ = tx.send(status_frame(&st)).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let mut stdin = child.stdin.take().filter(|_| p.stdin);
    let out = tokio::spawn(pump(child.stdout.take().expect("piped"), 1, tx.clone()));
    let err = tokio::spawn(pump(child.stderr.take().expect("piped"), 2, tx.clone()));
    let mut client_gone = false;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            m = incoming.next(), if !client_gone => match m {
                Some(Ok(Message::Binary(d))) if d.first() == Some(&0) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&d[1..]).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                // v5: the client closed its stdin.
                Some(Ok(Message::Binary(d))) if d.as_ref() == [255, 0] => stdin = None,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    client_gone = true;
                    stdin = None;
                    let _ = child.start_kill();
                }
                _ => {}
            },
        }
    };
    let _ = out.await;
    let _ = err.await;
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    let st = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: error executing command {:?}, exit code {code}", p.command),
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = tx.send(status_frame(&st)).await;
    drop(tx);
    let _ = writer.await;
}

fn status_frame(st: &Value) -> Message {
    let mut frame = vec![3u8];
    frame.extend(serde_json::to_vec(st).unwrap_or_default());
    Message::Binary(Bytes::from(frame))
}
