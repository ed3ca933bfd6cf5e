//! The fake backend's exec, logs and copy, scripted like its containers: a program name maps
//! to what its process does (write some output and exit with a code, echo its stdin like
//! `cat`, or run until killed), a sliver has a log, and a container has a tiny file tree.
//! Error words match the Docker backend's, so the relays' messages are tested as users see them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;

use super::FakeRuntime;
use crate::runtime::{ExecProcess, ExecSpec, Killer, LogsSpec, Output, Result, RuntimeError};

/// What an exec of a given program does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecBehaviour {
    /// Writes these chunks, then exits with the code.
    Script {
        /// What it writes, in order.
        output: Vec<Output>,
        /// Its exit code.
        exit_code: i64,
    },
    /// Copies stdin to stdout until end of input, then exits 0 (like `cat`).
    Echo,
    /// Runs until killed (like `sleep infinity`); killed, it exits 137.
    Hang,
}

/// A node in a container's file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Bytes),
}

/// One exec the fake started.
#[derive(Debug)]
pub(super) struct FakeExec {
    pub(super) container: String,
    pub(super) command: Vec<String>,
    pub(super) killed: Arc<AtomicBool>,
    pub(super) exit: watch::Receiver<Option<i64>>,
}

/// The file tree every fake container starts with.
pub(super) fn initial_tree(sliver_id: &str) -> BTreeMap<String, Entry> {
    BTreeMap::from([
        ("/".to_string(), Entry::Dir),
        ("/tmp".to_string(), Entry::Dir),
        ("/etc".to_string(), Entry::Dir),
        (
            "/etc/hostname".to_string(),
            Entry::File(Bytes::from(format!("{sliver_id}\n"))),
        ),
    ])
}

fn normal(path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        "/".to_string()
    } else {
        p.to_string()
    }
}

fn copy_refused(path: &str, message: String) -> RuntimeError {
    RuntimeError::Engine {
        op: format!("copy {path}"),
        message,
    }
}

impl FakeRuntime {
    pub(super) fn start_exec(&self, container_id: &str, spec: ExecSpec) -> Result<ExecProcess> {
        let mut s = self.answer("exec")?;
        let program = spec.command.first().cloned().unwrap_or_default();
        let Some(behaviour) = s.exec_scripts.get(&program).cloned() else {
            return Err(RuntimeError::Engine {
                op: "run the command".into(),
                message: format!(
                    "OCI runtime exec failed: exec: \"{program}\": executable file not found in $PATH"
                ),
            });
        };
        s.next_id += 1;
        let id = format!("e{}", s.next_id);
        s.calls
            .push(format!("exec {container_id} {}", spec.command.join(" ")));
        let (out_tx, out_rx) = mpsc::channel::<Result<Output>>(16);
        let (stdin, mut reader) = tokio::io::duplex(64 * 1024);
        let (exit_tx, exit_rx) = watch::channel(None);
        let killed = Arc::new(AtomicBool::new(false));
        let kill_now = Arc::new(Notify::new());
        s.execs.insert(
            id.clone(),
            FakeExec {
                container: container_id.to_string(),
                command: spec.command.clone(),
                killed: killed.clone(),
                exit: exit_rx,
            },
        );
        let wake = kill_now.clone();
        tokio::spawn(async move {
            let code = match behaviour {
                ExecBehaviour::Script { output, exit_code } => {
                    for o in output {
                        if out_tx.send(Ok(o)).await.is_err() {
                            break;
                        }
                    }
                    exit_code
                }
                ExecBehaviour::Echo => {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        tokio::select! {
                            n = reader.read(&mut buf) => match n {
                                Ok(0) | Err(_) => break 0,
                                Ok(n) => {
                                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                                    let _ = out_tx.send(Ok(Output::Stdout(chunk))).await;
                                }
                            },
                            _ = wake.notified() => break 137,
                        }
                    }
                }
                ExecBehaviour::Hang => {
                    wake.notified().await;
                    137
                }
            };
            let _ = exit_tx.send(Some(code));
        });
        let flag = killed.clone();
        let killer = Killer::new(move || {
            // Counted once, like a real process tree of one.
            if flag.swap(true, Ordering::SeqCst) {
                return 0;
            }
            kill_now.notify_one();
            1
        });
        Ok(ExecProcess {
            id,
            output: ReceiverStream::new(out_rx).boxed(),
            stdin: Box::pin(stdin),
            killer,
        })
    }

    pub(super) async fn wait_exit(&self, exec_id: &str) -> Result<Option<i64>> {
        let rx = self
            .answer("wait exec")?
            .execs
            .get(exec_id)
            .map(|e| e.exit.clone());
        let Some(mut rx) = rx else {
            return Err(RuntimeError::Engine {
                op: "read the exit code".into(),
                message: format!("no such exec: {exec_id}"),
            });
        };
        let code = rx.wait_for(Option::is_some).await.map(|c| *c);
        Ok(code.ok().flatten())
    }

    pub(super) fn log_stream(
        &self,
        container_id: &str,
        spec: LogsSpec,
    ) -> BoxStream<'static, Result<Output>> {
        let s = self.lock();
        let sliver = s.containers.get(container_id).map(|c| c.sliver_id.clone());
        let lines = sliver
            .and_then(|id| s.logs.get(&id).cloned())
            .unwrap_or_default();
        let skip = match spec.tail {
            Some(n) => lines.len().saturating_sub(n as usize),
            None => 0,
        };
        let past = futures::stream::iter(lines.into_iter().skip(skip).map(Ok));
        if spec.follow {
            // Nothing new is ever written: a follow lasts until the client leaves.
            past.chain(futures::stream::pending()).boxed()
        } else {
            past.boxed()
        }
    }

    pub(super) async fn upload(
        &self,
        container_id: &str,
        dir: &str,
        mut tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        let dir = normal(dir);
        match self
            .answer("copy in")?
            .files
            .get(container_id)
            .and_then(|t| t.get(&dir))
        {
            Some(Entry::Dir) => {}
            Some(Entry::File(_)) => {
                return Err(copy_refused(
                    &dir,
                    format!("not a directory in the sliver: {dir}"),
                ))
            }
            None => {
                return Err(copy_refused(
                    &dir,
                    format!("no such directory in the sliver: {dir}"),
                ))
            }
        }
        let mut got = Vec::new();
        while let Some(b) = tar.next().await {
            got.extend_from_slice(&b);
        }
        let mut s = self.lock();
        s.calls
            .push(format!("copy-in {container_id} {dir} {}", got.len()));
        s.uploads
            .push((container_id.to_string(), dir, Bytes::from(got)));
        Ok(())
    }

    pub(super) fn download(
        &self,
        container_id: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes>> {
        let path = normal(path);
        let entry = self
            .lock()
            .files
            .get(container_id)
            .and_then(|t| t.get(&path).cloned());
        let item = match entry {
            Some(Entry::File(bytes)) => tar_of(&path, &bytes),
            Some(Entry::Dir) => tar_of_dir(&path),
            None => Err(copy_refused(
                &path,
                format!("no such file or directory in the sliver: {path}"),
            )),
        };
        futures::stream::iter([item]).boxed()
    }
}

/// A tar archive holding one file named after the last part of `path`.
fn tar_of(path: &str, bytes: &[u8]) -> Result<Bytes> {
    let name = path.rsplit('/').next().unwrap_or("file");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, bytes)
        .and_then(|()| b.into_inner())
        .map(Bytes::from)
        .map_err(|e| copy_refused(path, e.to_string()))
}

/// A tar archive holding one empty directory.
fn tar_of_dir(path: &str) -> Result<Bytes> {
    let name = path.rsplit('/').find(|p| !p.is_empty()).unwrap_or(".");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, name, std::io::empty())
        .and_then(|()| b.into_inner())
        .map(Bytes::from)
        .map_err(|e| copy_refused(path, e.to_string()))
}
