//! Starting the testbed's processes and tools: detached daemons recorded in `pids.json` as soon as
//! they start, short-lived tools with a time limit, and errors that show the relevant log.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::procs::{self, Pids, Proc};

/// Processes started by this run, with handles to notice an early death.
pub struct Started {
    pub dir: PathBuf,
    pub pids: Pids,
    pub children: Vec<(Proc, Child)>,
}

impl Started {
    pub fn spawn(&mut self, name: &str, bin: &Path, args: &[String], log: &Path) -> Result<()> {
        let (proc, child) = procs::spawn_detached(name, bin, args, log)?;
        self.pids.processes.push(proc.clone());
        self.pids.save(&self.dir)?;
        self.children.push((proc, child));
        Ok(())
    }

    /// Fails with the log of the first started process that already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for (proc, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(with_log(
                    &format!("{} exited ({status})", proc.name),
                    &proc.log,
                ));
            }
        }
        Ok(())
    }
}

/// Prints the end of a log to stderr and returns an error pointing at it and at `dev down`.
pub fn with_log(what: &str, log: &Path) -> anyhow::Error {
    let tail = procs::tail(log, 15);
    if !tail.is_empty() {
        eprintln!("--- last lines of {} ---\n{tail}\n---", log.display());
    }
    anyhow!(
        "{what} (log: {}; clean up with: slicectl dev down)",
        log.display()
    )
}

pub fn step(msg: &str) {
    eprintln!("» {msg}");
}

/// Paths are passed as arguments; non-UTF-8 paths are replaced lossily (the testbed lives in $HOME).
pub fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs a short-lived tool; on failure shows its output and says which step failed.
pub async fn run_tool(bin: &Path, args: &[String], limit: Duration, what: &str) -> Result<()> {
    let run = tokio::process::Command::new(bin)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {}s", limit.as_secs()))?
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    if !text.trim().is_empty() {
        eprintln!("--- output of {what} ---\n{}\n---", text.trim_end());
    }
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim();
    bail!("{what} failed ({}): {last}", out.status)
}
