//! `slicectl dev down`: stops the testbed's processes (SIGTERM, SIGKILL after 5 s), has each node
//! remove its containers and networks, deletes the testbed's files and drops the `dev` context.
//! Idempotent: with nothing to stop it says so and succeeds. A node whose cleanup fails keeps its
//! state directory, so running `dev down` again can retry.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Result};

use super::{find_binary, previous_context_file, procs::Pids, CONTEXT};
use crate::{ctx::Ctx, output};

/// Entries of the testbed directory that `dev up` creates; nothing else is ever removed.
const OURS: &[&str] = &[
    "pids.json",
    ".pids.json.tmp",
    "previous-context",
    "service.log",
    "service",
    "nodes",
    "kube",
];

/// " --dir DIR" when DIR is not the default, for messages that suggest a command.
pub fn dir_flag(dir: &Path) -> String {
    match super::resolve_dir(None) {
        Ok(default) if default == dir => String::new(),
        _ => format!(" --dir {}", dir.display()),
    }
}

/// Whether DIR holds (part of) a testbed.
pub fn has_leftovers(dir: &Path) -> bool {
    ["pids.json", "service", "nodes", "kube"]
        .iter()
        .any(|e| dir.join(e).exists())
}

pub async fn run(dir: &Path, ctx: &Ctx) -> Result<()> {
    if !has_leftovers(dir) {
        return output::out(&format!(
            "No local testbed in {}; nothing to stop.\n",
            dir.display()
        ));
    }
    teardown(dir, ctx, false).await?;
    output::out(&format!(
        "The local testbed in {} is gone.\n",
        dir.display()
    ))
}

/// Stops, cleans up and forgets the testbed in DIR.
pub async fn teardown(dir: &Path, ctx: &Ctx, quiet: bool) -> Result<()> {
    let say = |msg: String| {
        if !quiet {
            eprintln!("» {msg}");
        }
    };
    let pids = Pids::load(dir)?.unwrap_or_default();
    let live = pids.alive().len();
    if live > 0 {
        say(format!("Stopping {live} processes"));
    }
    let killed = super::procs::stop_all(&pids.processes, Duration::from_secs(5));
    if !killed.is_empty() {
        say(format!(
            "Killed {} (they ignored SIGTERM for 5s)",
            killed.join(", ")
        ));
    }

    let mut failures = Vec::new();
    let node_dirs = node_state_dirs(dir, &pids);
    if !node_dirs.is_empty() {
        say(format!(
            "Removing the containers of {} nodes",
            node_dirs.len()
        ));
        match find_binary("node-manager") {
            Ok(bin) => {
                for state in &node_dirs {
                    if let Err(e) = cleanup_node(&bin, state).await {
                        failures.push(e);
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }

    restore_context(ctx, dir, pids.server.as_deref())?;
    for entry in OURS {
        let path = dir.join(entry);
        // A node whose cleanup failed keeps its state, so a second `dev down` can retry.
        if *entry == "nodes" && !failures.is_empty() {
            continue;
        }
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
    let _ = fs::remove_dir(dir); // Only if empty: DIR might hold the user's own files.
    if !failures.is_empty() {
        bail!(
            "{}; run slicectl dev down{} again to retry",
            failures.join("; "),
            dir_flag(dir)
        );
    }
    Ok(())
}

/// `DIR/nodes/<site>` for every recorded site and every state directory found.
fn node_state_dirs(dir: &Path, pids: &Pids) -> Vec<PathBuf> {
    let nodes = dir.join("nodes");
    let mut dirs: Vec<PathBuf> = pids.sites.iter().map(|s| nodes.join(s)).collect();
    if let Ok(entries) = fs::read_dir(&nodes) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    dirs.sort();
    dirs.dedup();
    dirs.retain(|d| d.is_dir());
    dirs
}

async fn cleanup_node(bin: &Path, state: &Path) -> Result<(), String> {
    let run = tokio::process::Command::new(bin)
        .arg("cleanup")
        .arg("--state-dir")
        .arg(state)
        .kill_on_drop(true)
        .output();
    let what = format!("node-manager cleanup --state-dir {}", state.display());
    match tokio::time::timeout(Duration::from_secs(120), run).await {
        Err(_) => Err(format!("{what} did not finish within 120s")),
        Ok(Err(e)) => Err(format!("cannot run {what}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
                .to_string();
            Err(format!("{what} failed: {last}"))
        }
    }
}

/// Drops the `dev` context if this testbed created it, and makes the previous context current again.
fn restore_context(ctx: &Ctx, dir: &Path, server: Option<&str>) -> Result<()> {
    let Ok(previous) = fs::read_to_string(previous_context_file(dir)) else {
        return Ok(()); // `dev up` never got as far as touching the config.
    };
    let mut config = ctx.config()?;
    let ours = config
        .contexts
        .get(CONTEXT)
        .is_some_and(|c| server.is_none_or(|s| c.server == s));
    if !ours {
        return Ok(());
    }
    config.contexts.remove(CONTEXT);
    if config.current.as_deref() == Some(CONTEXT) {
        let previous = previous.trim();
        config.current = config
            .contexts
            .contains_key(previous)
            .then(|| previous.to_string());
    }
    config.save(&ctx.config_path)
}
