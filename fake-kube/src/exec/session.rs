//! One exec session on an upgraded websocket: the `docker exec` process, its stdin fed from
//! channel 0 (closed by a v5 close signal), stdout and stderr sent on channels 1 and 2, and the
//! final `Status` with the exit code on channel 3, then a normal close.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message};
use tokio_tungstenite::WebSocketStream;

use super::Params;

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

pub(super) async fn run<S>(ws: WebSocketStream<S>, container: String, p: Params)
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
