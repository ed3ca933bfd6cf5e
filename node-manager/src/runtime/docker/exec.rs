//! Exec on the engine: create and start an attached exec, set its terminal size, pin its host
//! process (so it can be killed when its session goes away: the engine has no "kill exec"
//! call), and read its exit code. The session relay lives in `access::exec`, over the trait.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;

use super::connect::{engine, engine_message};
use super::kill::HostProcess;
use super::DockerRuntime;
use crate::runtime::{ExecProcess, ExecSpec, Killer, Output, Result, RuntimeError, TermSize};

/// Largest output chunk read from the engine at once.
const OUTPUT_CAPACITY: usize = 256 * 1024;

fn refused(message: String) -> RuntimeError {
    RuntimeError::Engine {
        op: "run the command".into(),
        message,
    }
}

impl DockerRuntime {
    pub(super) async fn start_exec(
        &self,
        container_id: &str,
        spec: ExecSpec,
    ) -> Result<ExecProcess> {
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let opts = CreateExecOptions {
            cmd: Some(spec.command.clone()),
            env: Some(env),
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(container_id, opts)
            .await
            .map_err(|e| refused(engine_message(&e)))?
            .id;
        let start_opts = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: Some(OUTPUT_CAPACITY),
        };
        let (output, input) = match self.docker.start_exec(&exec, Some(start_opts)).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => return Err(refused("exec started detached".into())),
            Err(e) => return Err(refused(engine_message(&e))),
        };
        if let (true, Some(size)) = (spec.tty, spec.size) {
            self.initial_size(&exec, size).await;
        }
        let killer = match self.pin_process(&exec, container_id).await {
            Some(p) => {
                tracing::info!(exec = %exec, pid = p.pid(), "exec started");
                Killer::new(move || p.kill_tree())
            }
            None => Killer::none(),
        };
        let output = output
            .filter_map(|item| async move {
                match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Ok(Output::Stdout(message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(RuntimeError::Engine {
                        op: "read exec output".into(),
                        message: e.to_string(),
                    })),
                }
            })
            .boxed();
        Ok(ExecProcess {
            id: exec,
            output,
            stdin: input,
            killer,
        })
    }

    pub(super) async fn resize_exec_tty(&self, exec: &str, size: TermSize) -> Result<()> {
        self.docker
            .resize_exec(exec, size_opts(size))
            .await
            .map_err(|e| engine(format!("resize exec {exec}"), e))
    }

    /// Output closed; the process may still be finishing (or have closed its stdout early).
    pub(super) async fn wait_exec_exit(&self, exec: &str) -> Result<Option<i64>> {
        let mut wait = Duration::from_millis(10);
        loop {
            match self.docker.inspect_exec(exec).await {
                Ok(i) if i.running != Some(true) => return Ok(i.exit_code),
                Ok(_) => {}
                Err(e) => return Err(engine("read the exit code", e)),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Sets the terminal size as soon as the engine accepts it. Engines before API 1.42
    /// cannot create an exec with a size, so the first instants of a terminal may see 0x0
    /// (shells pick the size up on the SIGWINCH a resize sends), as with `docker exec -t`.
    async fn initial_size(&self, exec: &str, size: TermSize) {
        for _ in 0..20 {
            // Refused until the process runs.
            if self.docker.resize_exec(exec, size_opts(size)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::debug!(exec, "could not set the initial terminal size");
    }

    /// The exec's host process, once the engine reports it; `None` if it ended first or
    /// cannot be seen from here (then a vanished client cannot kill it, which is logged).
    async fn pin_process(&self, exec: &str, container_id: &str) -> Option<HostProcess> {
        let mut wait = Duration::from_millis(5);
        for _ in 0..40 {
            match self.docker.inspect_exec(exec).await {
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
}

fn size_opts(size: TermSize) -> ResizeExecOptions {
    ResizeExecOptions {
        height: size.rows.max(1),
        width: size.cols.max(1),
    }
}
