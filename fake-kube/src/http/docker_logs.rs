//! A Pod's log when the fake runs Pods' commands in Docker (`--docker-exec`): the output of the
//! container behind the Pod, stdout and stderr together in the order written, as a kubelet
//! serves it; `tailLines`, `timestamps` and `follow` as for the simulated log.
//!
//! It reads with `docker logs --timestamps`, which gives both streams with one clock, so whole
//! logs are merged in time order and the stamps dropped unless asked for. A follow ends when the
//! container ends or the Pod ends for good (as the simulated log's does).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{error, streamed, Body};
use crate::exec::docker::Spec;
use crate::state::Shared;
use crate::status::ApiError;

/// Drops docker's `2006-01-02T15:04:05.999999999Z ` stamp unless it is wanted.
fn line(raw: &str, timestamps: bool) -> String {
    let text = if timestamps {
        raw
    } else {
        raw.split_once(' ').map_or(raw, |(_, rest)| rest)
    };
    format!("{text}\n")
}

fn docker_logs(container: &str, q: &HashMap<String, String>, follow: bool) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["logs", "--timestamps"]);
    if let Some(n) = q.get("tailLines").and_then(|s| s.parse::<u64>().ok()) {
        cmd.args(["--tail", &n.to_string()]);
    }
    if follow {
        cmd.arg("--follow");
    }
    cmd.arg(container)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Serves the log of `spec`'s container (started now if the kubelet has not yet).
pub async fn serve(
    shared: Arc<Shared>,
    spec: Spec,
    key: (String, String),
    q: HashMap<String, String>,
) -> Response<Body> {
    let Some(dock) = shared.docker.clone() else {
        return error(&ApiError::bad_request("no Docker behind this fake's Pods"));
    };
    let container = match dock.container_for(&spec).await {
        Ok(c) => c,
        Err(m) => return error(&ApiError::new(500, "InternalError", m)),
    };
    let timestamps = q.get("timestamps").is_some_and(|v| v == "true" || v == "1");
    let follow = q.get("follow").is_some_and(|v| v == "true" || v == "1");
    if !follow {
        let out = match docker_logs(&container, &q, false).output().await {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let m = String::from_utf8_lossy(&o.stderr).trim().to_string();
                return error(&ApiError::new(500, "InternalError", m));
            }
            Err(e) => return error(&ApiError::new(500, "InternalError", e.to_string())),
        };
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let mut lines: Vec<&str> = o.lines().chain(e.lines()).collect();
        // RFC 3339 stamps of one clock and one width sort as text.
        lines.sort_by_key(|l| l.split_once(' ').map_or(*l, |(t, _)| t));
        let body: String = lines.iter().map(|l| line(l, timestamps)).collect();
        return Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)).boxed_unsync())
            .expect("static response parts are valid");
    }
    let mut child = match docker_logs(&container, &q, true).spawn() {
        Ok(c) => c,
        Err(e) => return error(&ApiError::new(500, "InternalError", e.to_string())),
    };
    let (tx, rx) = mpsc::channel(64);
    let (lines_tx, mut lines) = mpsc::channel::<String>(64);
    for r in [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let lines_tx = lines_tx.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(r).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if lines_tx.send(l).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(lines_tx);
    tokio::spawn(async move {
        let mut woken = shared.log_written.subscribe();
        loop {
            let ended = {
                let sim = shared.sim.lock().expect("sim lock");
                sim.logs.get(&key).is_none_or(|b| b.closed)
            };
            if ended {
                break;
            }
            tokio::select! {
                l = lines.recv() => match l {
                    Some(l) => {
                        if tx.send(Bytes::from(line(&l, timestamps))).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                r = woken.recv() => {
                    if r.is_err() {
                        woken = shared.log_written.subscribe();
                    }
                }
            }
        }
        // Ends `docker logs --follow` (kill_on_drop) with the response.
        drop(child);
    });
    streamed("text/plain", rx)
}
