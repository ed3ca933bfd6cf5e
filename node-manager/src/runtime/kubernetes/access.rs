//! Researcher access through the Kubernetes API: exec over websockets (kube's
//! `AttachedProcess`), logs (follow), and copy as `kubectl cp` does it, tar over exec. No
//! inbound port on the node is needed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{AsyncBufReadExt, FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, LogParams, TerminalSize};
use kube::Api;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::client::error;
use super::names;
use crate::runtime::{
    ExecProcess, ExecSpec, Killer, LogsSpec, Output, Result, RuntimeError, TermSize,
};

/// What is kept of a running exec: its exit status and its terminal.
#[derive(Default, Clone)]
pub struct Execs(Arc<Mutex<HashMap<String, ExecEntry>>>);

struct ExecEntry {
    status: Option<BoxFuture<'static, Option<Status>>>,
    resize: Option<futures::channel::mpsc::Sender<TerminalSize>>,
}

pub(super) fn pods(client: &kube::Client, container_id: &str) -> Result<(Api<Pod>, String)> {
    let (ns, name) =
        names::split_container_id(container_id).ok_or_else(|| RuntimeError::Engine {
            op: "exec".into(),
            message: format!("{container_id:?} is not a Pod of this node"),
        })?;
    Ok((Api::namespaced(client.clone(), ns), name.to_string()))
}

/// A reader as a stream of chunks, ended by EOF.
pub fn chunks<R: AsyncRead + Unpin + Send + 'static>(
    r: R,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    stream::unfold(r, |mut r| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    })
    .boxed()
}

/// Starts `spec` in the Pod's container.
pub async fn exec(
    client: &kube::Client,
    execs: &Execs,
    container_id: &str,
    spec: ExecSpec,
) -> Result<ExecProcess> {
    let (api, name) = pods(client, container_id)?;
    let mut command = spec.command.clone();
    if !spec.env.is_empty() {
        // The exec API has no environment: `env` sets it, as kubectl users do.
        let mut c = vec!["env".to_string()];
        c.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        c.extend(command);
        command = c;
    }
    let ap = AttachParams::default()
        .container(names::CONTAINER)
        .stdin(true)
        .stdout(true)
        .stderr(!spec.tty)
        .tty(spec.tty);
    let mut p = api
        .exec(&name, command, &ap)
        .await
        .map_err(|e| error(format!("exec in {container_id}"), e))?;
    let stdout = p.stdout().map(chunks);
    let stderr = p.stderr().map(chunks);
    let stdin = p.stdin().ok_or_else(|| RuntimeError::Engine {
        op: "exec".into(),
        message: "the cluster gave no stdin".into(),
    })?;
    let mut resize = if spec.tty { p.terminal_size() } else { None };
    if let (Some(tx), Some(size)) = (resize.as_mut(), spec.size) {
        let _ = tx.try_send(TerminalSize {
            width: size.cols,
            height: size.rows,
        });
    }
    let status = p.take_status().map(|f| f.boxed());
    let id = format!("{container_id}#{}", rand::random::<u64>());
    let out = stdout.map(|s| s.map(|c| c.map(Output::Stdout)).boxed());
    let err = stderr.map(|s| s.map(|c| c.map(Output::Stderr)).boxed());
    let output = stream::select(
        out.unwrap_or_else(|| stream::empty().boxed()),
        err.unwrap_or_else(|| stream::empty().boxed()),
    )
    .map(|r| {
        r.map_err(|e| RuntimeError::Engine {
            op: "exec output".into(),
            message: e.to_string(),
        })
    })
    .boxed();
    execs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), ExecEntry { status, resize });
    // Dropping the process ends the websocket; the kubelet then ends the command.
    let process = Arc::new(Mutex::new(Some(p)));
    let killer = Killer::new(move || {
        let p = process.lock().unwrap_or_else(|p| p.into_inner()).take();
        p.map_or(0, |p| {
            p.abort();
            1
        })
    });
    Ok(ExecProcess {
        id,
        output,
        stdin: Box::pin(stdin),
        killer,
    })
}

/// Changes an exec's terminal size.
pub fn resize(execs: &Execs, id: &str, size: TermSize) -> Result<()> {
    let mut m = execs.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = m.get_mut(id).and_then(|e| e.resize.as_mut()) {
        let _ = tx.try_send(TerminalSize {
            width: size.cols,
            height: size.rows,
        });
    }
    Ok(())
}

/// The exit code of an exec whose output closed: 0 on success, the `ExitCode` cause otherwise.
pub async fn wait(execs: &Execs, id: &str) -> Result<Option<i64>> {
    let status = execs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id)
        .and_then(|e| e.status);
    let Some(status) = status else {
        return Ok(None);
    };
    Ok(status.await.map(|s| exit_code(&s)))
}

pub(super) fn exit_code(s: &Status) -> i64 {
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
}

/// The Pod's log, following it if asked.
pub fn logs(
    client: &kube::Client,
    container_id: &str,
    spec: LogsSpec,
) -> BoxStream<'static, Result<Output>> {
    let parts = pods(client, container_id);
    let id = container_id.to_string();
    stream::once(async move {
        let (api, name) = parts?;
        let lp = LogParams {
            container: Some(names::CONTAINER.to_string()),
            follow: spec.follow,
            tail_lines: spec.tail.map(i64::from),
            ..Default::default()
        };
        let r = api
            .log_stream(&name, &lp)
            .await
            .map_err(|e| error(format!("logs of {id}"), e))?;
        Ok(r.lines().map(|l| {
            l.map(|l| Output::Stdout(Bytes::from(format!("{l}\n"))))
                .map_err(|e| RuntimeError::Engine {
                    op: "logs".into(),
                    message: e.to_string(),
                })
        }))
    })
    .flat_map(|r: Result<_>| match r {
        Ok(s) => s.boxed(),
        Err(e) => stream::once(async move { Err(e) }).boxed(),
    })
    .boxed()
}
