//! Exec sessions: a command in a running sliver, with stdin, a terminal if asked, and its exit
//! code. If the client goes away (the service drops the stream) or the session idles out, the
//! process is killed: an exec must never outlive its session. The backend's [`Killer`] also
//! kills on drop, so an aborted task or an agent shutdown does not leak the process either.

use futures::StreamExt;
use slicebed_proto::v1::{ExecStart, SessionEnd, TerminalSize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::stream::{failed, Gone, Inbound, Incoming, Outbound, Session};
use super::target;
use crate::runtime::{ExecSpec, Output, Result, Runtime, TermSize};

/// How the relay ended.
enum Outcome {
    Exited(Option<i64>),
    ClientGone(Gone),
    Idle,
    Failed(String),
}

/// A terminal size from the wire (u32) in the backend's terms.
pub fn term_size(size: TerminalSize) -> TermSize {
    let clamp = |n: u32| n.clamp(1, u16::MAX.into()) as u16;
    TermSize {
        rows: clamp(size.rows),
        cols: clamp(size.cols),
    }
}

/// Runs one exec session to its end.
pub async fn run(rt: &impl Runtime, sliver_id: &str, start: ExecStart, mut s: Session) {
    let t = match target::find_running(rt, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    if start.command.is_empty() {
        return s.finish(failed("no command given")).await;
    }
    let spec = ExecSpec {
        command: start.command.clone(),
        env: start.env.clone().into_iter().collect(),
        stdin: start.stdin,
        tty: start.tty,
        size: start.size.map(term_size),
    };
    let mut p = match rt.exec(&t.container_id, spec).await {
        Ok(p) => p,
        Err(e) => {
            return s
                .finish(failed(format!("cannot run the command: {}", e.message())))
                .await
        }
    };
    tracing::info!(sliver = sliver_id, exec = %p.id, killable = p.killer.armed(), "exec started");

    let outcome = tokio::select! {
        o = relay_out(rt, &p.id, &mut p.output, &s.out) => o,
        g = relay_in(rt, &p.id, start.tty, &mut p.stdin, &mut s.inbound) => Outcome::ClientGone(g),
        _ = s.idle.expired() => Outcome::Idle,
    };
    match outcome {
        Outcome::Exited(code) => {
            p.killer.disarm();
            let end = SessionEnd {
                exit_code: Some(code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1)),
                ..Default::default()
            };
            s.finish(end).await;
        }
        Outcome::ClientGone(g) => {
            let n = p.killer.kill();
            tracing::info!(sliver = sliver_id, exec = %p.id, killed = n, reason = %g.0, "client gone; exec killed");
        }
        Outcome::Idle => {
            let n = p.killer.kill();
            tracing::info!(sliver = sliver_id, exec = %p.id, killed = n, "idle timeout; exec killed");
            s.finish(failed("idle timeout")).await;
        }
        Outcome::Failed(m) => {
            p.killer.kill();
            s.finish(failed(m)).await;
        }
    }
}

/// Output to the service until the process closes it, then its exit code.
async fn relay_out(
    rt: &impl Runtime,
    exec: &str,
    output: &mut (impl futures::Stream<Item = Result<Output>> + Unpin),
    out: &Outbound,
) -> Outcome {
    while let Some(item) = output.next().await {
        let sent = match item {
            Ok(Output::Stdout(b)) => out.stdout(&b).await,
            Ok(Output::Stderr(b)) => out.stderr(&b).await,
            Err(e) => return Outcome::Failed(format!("exec output broke: {}", e.message())),
        };
        if let Err(g) = sent {
            return Outcome::ClientGone(g);
        }
    }
    match rt.wait_exec(exec).await {
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(format!("cannot read the exit code: {}", e.message())),
    }
}

/// Stdin, end of stdin and resizes from the service, until the stream ends.
async fn relay_in(
    rt: &impl Runtime,
    exec: &str,
    tty: bool,
    input: &mut (impl AsyncWrite + Unpin),
    inbound: &mut Inbound,
) -> Gone {
    let mut open = true;
    loop {
        match inbound.next().await {
            Err(g) => return g,
            Ok(Incoming::Data(b)) if open => {
                if input.write_all(&b).await.is_err() {
                    // The process closed its stdin; later bytes have nowhere to go.
                    open = false;
                }
            }
            Ok(Incoming::Data(_)) => {}
            Ok(Incoming::Eof) => {
                if open {
                    let _ = input.shutdown().await;
                    open = false;
                }
            }
            Ok(Incoming::Resize(size)) if tty => {
                if let Err(e) = rt.resize_exec(exec, term_size(size)).await {
                    tracing::debug!(exec, error = %e, "resize failed");
                }
            }
            Ok(Incoming::Resize(_)) => {}
        }
    }
}
