//! Copy into and out of a sliver as `kubectl cp` does it: tar over exec, so no file API and no
//! inbound port is needed (the image must have `sh` and `tar`). Errors carry the words `tar` or
//! the shell wrote, for researchers.

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use kube::api::AttachParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::access::{chunks, exit_code, pods};
use super::client::error;
use super::names;
use crate::runtime::{Result, RuntimeError};

/// Extracts `tar` into directory `dir` of the sliver; refuses a `dir` that is not one.
pub async fn copy_in(
    client: &kube::Client,
    container_id: &str,
    dir: &str,
    tar: BoxStream<'static, Bytes>,
) -> Result<()> {
    let script = r#"[ -d "$1" ] || { echo "$1 is not a directory in the sliver" >&2; exit 2; }; tar -xf - -C "$1""#.to_string();
    let cmd = vec![
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        dir.to_string(),
    ];
    let mut out = run_collect(client, container_id, cmd, Some(tar)).await?;
    while let Some(r) = out.next().await {
        r?;
    }
    Ok(())
}

/// `path` of the sliver (file or directory) as a tar stream.
pub fn copy_out(
    client: &kube::Client,
    container_id: &str,
    path: &str,
) -> BoxStream<'static, Result<Bytes>> {
    let client = client.clone();
    let id = container_id.to_string();
    let (parent, base) = match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", b)) => ("/".to_string(), b.to_string()),
        Some((p, b)) => (p.to_string(), b.to_string()),
        None => (".".to_string(), path.to_string()),
    };
    let cmd = vec![
        "tar".into(),
        "-cf".into(),
        "-".into(),
        "-C".into(),
        parent,
        base,
    ];
    stream::once(async move { run_collect(&client, &id, cmd, None).await })
        .flat_map(|r| match r {
            Ok(s) => s,
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Runs `command` with `input` on stdin; its stdout, or an error with its stderr.
pub async fn run_collect(
    client: &kube::Client,
    container_id: &str,
    command: Vec<String>,
    input: Option<BoxStream<'static, Bytes>>,
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let (api, name) = pods(client, container_id)?;
    let ap = AttachParams::default()
        .container(names::CONTAINER)
        .stdin(input.is_some())
        .stdout(true)
        .stderr(true);
    let mut p = api
        .exec(&name, command, &ap)
        .await
        .map_err(|e| error(format!("copy with {container_id}"), e))?;
    if let (Some(mut tar), Some(mut w)) = (input, p.stdin()) {
        tokio::spawn(async move {
            while let Some(b) = tar.next().await {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
    }
    let stdout = p
        .stdout()
        .map(chunks)
        .unwrap_or_else(|| stream::empty().boxed());
    let mut stderr = p.stderr();
    let status = p.take_status();
    let tail = stream::once(async move {
        let mut err = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut err).await;
        }
        let code = match status {
            Some(s) => s.await.map_or(0, |s| exit_code(&s)),
            None => 0,
        };
        drop(p);
        if code == 0 {
            None
        } else {
            let words = String::from_utf8_lossy(&err).trim().to_string();
            Some(Err(RuntimeError::Engine {
                op: "copy".into(),
                message: if words.is_empty() {
                    format!("tar exited with {code}")
                } else {
                    words
                },
            }))
        }
    })
    .filter_map(|x| async move { x });
    Ok(stdout
        .map(|r| {
            r.map_err(|e| RuntimeError::Engine {
                op: "copy".into(),
                message: e.to_string(),
            })
        })
        .chain(tail)
        .boxed())
}
