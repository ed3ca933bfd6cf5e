//! Exec sessions: a command in a running sliver, with stdin, a terminal if asked, and its exit
//! code. If the client goes away (the service drops the stream) or the session idles out, the
//! process is killed: an exec must never outlive its session. The [`Reaper`] also kills on
//! drop, so an aborted task or an agent shutdown does not leak the process either.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;
use slicebed_proto::v1::{ExecStart, SessionEnd, TerminalSize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::kill::HostProcess;
use super::stream::{failed, Gone, Inbound, Incoming, Outbound, Session, MAX_CHUNK};
use super::{engine_message, target};

/// How the relay ended.
enum Outcome {
    Exited(Option<i64>),
    ClientGone(Gone),
    Idle,
    Failed(String),
}

/// Kills the exec's process tree unless disarmed, at the latest when dropped.
struct Reaper(Option<HostProcess>);

impl Reaper {
    fn kill(&mut self) -> usize {
        self.0.take().map(|p| p.kill_tree()).unwrap_or(0)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one exec session to its end.
pub async fn run(docker: &Docker, node: &str, sliver_id: &str, start: ExecStart, mut s: Session) {
    let t = match target::find_running(docker, node, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    if start.command.is_empty() {
        return s.finish(failed("no command given")).await;
    }
    let env: Vec<String> = start.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let opts = CreateExecOptions {
        cmd: Some(start.command.clone()),
        env: Some(env),
        attach_stdin: Some(start.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(start.tty),
        ..Default::default()
    };
    let exec = match docker.create_exec(&t.id, opts).await {
        Ok(e) => e.id,
        Err(e) => return s.finish(failed(cannot_run(&e))).await,
    };
    let start_opts = StartExecOptions {
        detach: false,
        tty: start.tty,
        output_capacity: Some(MAX_CHUNK),
    };
    let (output, input) = match docker.start_exec(&exec, Some(start_opts)).await {
        Ok(StartExecResults::Attached { output, input }) => (output, input),
        Ok(StartExecResults::Detached) => return s.finish(failed("exec started detached")).await,
        Err(e) => return s.finish(failed(cannot_run(&e))).await,
    };
    if let (true, Some(size)) = (start.tty, start.size) {
        initial_size(docker, &exec, size).await;
    }
    let mut reaper = Reaper(pin_process(docker, &exec, &t.id).await);
    tracing::info!(sliver = sliver_id, exec = %exec, pid = ?reaper.0.as_ref().map(HostProcess::pid), "exec started");

    let outcome = tokio::select! {
        o = relay_out(docker, &exec, output, &s.out) => o,
        g = relay_in(docker, &exec, start.tty, input, &mut s.inbound) => Outcome::ClientGone(g),
        _ = s.idle.expired() => Outcome::Idle,
    };
    match outcome {
        Outcome::Exited(code) => {
            reaper.0 = None;
            let end = SessionEnd {
                exit_code: Some(code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1)),
                ..Default::default()
            };
            s.finish(end).await;
        }
        Outcome::ClientGone(g) => {
            let n = reaper.kill();
            tracing::info!(sliver = sliver_id, exec = %exec, killed = n, reason = %g.0, "client gone; exec killed");
        }
        Outcome::Idle => {
            let n = reaper.kill();
            tracing::info!(sliver = sliver_id, exec = %exec, killed = n, "idle timeout; exec killed");
            s.finish(failed("idle timeout")).await;
        }
        Outcome::Failed(m) => {
            reaper.kill();
            s.finish(failed(m)).await;
        }
    }
}

fn cannot_run(e: &bollard::errors::Error) -> String {
    format!("cannot run the command: {}", engine_message(e))
}

/// Output to the service until the process closes it, then its exit code.
async fn relay_out(
    docker: &Docker,
    exec: &str,
    mut output: impl futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
        + Unpin,
    out: &Outbound,
) -> Outcome {
    use bollard::container::LogOutput as L;
    while let Some(item) = output.next().await {
        let sent = match item {
            Ok(L::StdOut { message } | L::Console { message }) => out.stdout(&message).await,
            Ok(L::StdErr { message }) => out.stderr(&message).await,
            Ok(L::StdIn { .. }) => Ok(0),
            Err(e) => return Outcome::Failed(format!("exec output broke: {e}")),
        };
        if let Err(g) = sent {
            return Outcome::ClientGone(g);
        }
    }
    // Output closed; the process may still be finishing (or have closed its stdout early).
    let mut wait = Duration::from_millis(10);
    loop {
        match docker.inspect_exec(exec).await {
            Ok(i) if i.running != Some(true) => return Outcome::Exited(i.exit_code),
            Ok(_) => {}
            Err(e) => return Outcome::Failed(format!("cannot read the exit code: {e}")),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Stdin, end of stdin and resizes from the service, until the stream ends.
async fn relay_in(
    docker: &Docker,
    exec: &str,
    tty: bool,
    mut input: impl AsyncWrite + Unpin,
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
            Ok(Incoming::Resize(size)) if tty => resize(docker, exec, size).await,
            Ok(Incoming::Resize(_)) => {}
        }
    }
}

fn size_opts(size: TerminalSize) -> ResizeExecOptions {
    ResizeExecOptions {
        height: size.rows.clamp(1, u16::MAX.into()) as u16,
        width: size.cols.clamp(1, u16::MAX.into()) as u16,
    }
}

async fn resize(docker: &Docker, exec: &str, size: TerminalSize) {
    if let Err(e) = docker.resize_exec(exec, size_opts(size)).await {
        tracing::debug!(exec, error = %e, "resize failed");
    }
}

/// Sets the terminal size as soon as the engine accepts it. Engines before API 1.42 cannot
/// create an exec with a size, so the first instants of a terminal may see 0x0 (shells pick
/// the size up on the SIGWINCH a resize sends), as with `docker exec -t`.
async fn initial_size(docker: &Docker, exec: &str, size: TerminalSize) {
    for _ in 0..20 {
        // Refused until the process runs.
        if docker.resize_exec(exec, size_opts(size)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::debug!(exec, "could not set the initial terminal size");
}

/// The exec's host process, once the engine reports it; `None` if it ended first or cannot
/// be seen from here (then a vanished client cannot kill it, which is logged).
async fn pin_process(docker: &Docker, exec: &str, container_id: &str) -> Option<HostProcess> {
    let mut wait = Duration::from_millis(5);
    for _ in 0..40 {
        match docker.inspect_exec(exec).await {
            Ok(i) if i.running == Some(true) && i.pid.unwrap_or(0) > 0 => {
                let pid = i.pid.unwrap_or(0);
                let p = HostProcess::identify(pid, container_id);
                if p.is_none() {
                    tracing::warn!(exec, pid, "exec's host process is not visible here; it cannot be killed if the client leaves");
                }
                return p;
            }
            Ok(i) if i.exit_code.is_some() => return None,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(exec, error = %e, "cannot inspect exec");
                return None;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
    tracing::warn!(exec, "exec did not start within 5 s");
    None
}
