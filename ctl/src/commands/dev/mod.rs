//! `slicectl dev up|down`: a whole testbed on this machine — one slice-service, a node-manager per
//! demo site and a demo slice — for trying Slicebed out and for hacking on it.
//!
//! Everything lives under one directory (state, logs, `pids.json`); `dev down` removes only the
//! entries `dev up` creates, so pointing `--dir` somewhere odd cannot wipe unrelated files.

mod down;
mod kube;
mod launch;
mod procs;
mod sites;
mod up;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;

use crate::ctx::Ctx;

/// Name of the context `dev up` creates.
pub const CONTEXT: &str = "dev";

#[derive(Debug, Subcommand)]
pub enum DevCmd {
    /// Start a local testbed and a demo slice
    Up {
        /// Number of nodes, one per demo site
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=sites::SITES.len() as i64))]
        nodes: u32,
        /// Directory for state and logs [default: $XDG_STATE_HOME/slicebed/dev]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Give up waiting for nodes and the demo slice after this long
        #[arg(long, value_parser = crate::quantity::parse_duration, default_value = "3m", value_name = "DURATION")]
        timeout: i64,
        /// Also add a Kubernetes-backed site (k8s-lab): a fake cluster of 3 nodes
        /// (slicebed-fake-kube) and one cluster agent, so the demo slice runs a Pod there
        #[arg(long)]
        kube_site: bool,
    },
    /// Stop the local testbed and remove its containers and state
    Down {
        /// Directory of the testbed [default: $XDG_STATE_HOME/slicebed/dev]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub async fn run(cmd: DevCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        DevCmd::Up {
            nodes,
            dir,
            timeout,
            kube_site,
        } => {
            let dir = resolve_dir(dir)?;
            up::run(nodes as usize, &dir, timeout as u64, kube_site, ctx).await
        }
        DevCmd::Down { dir } => down::run(&resolve_dir(dir)?, ctx).await,
    }
}

/// The testbed directory, absolute (children run with it as an argument, not as their cwd).
fn resolve_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d,
        None => default_dir(|k| std::env::var_os(k).map(PathBuf::from))?,
    };
    if dir.is_absolute() {
        Ok(dir)
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(dir))
    }
}

fn default_dir(env: impl Fn(&str) -> Option<PathBuf>) -> Result<PathBuf> {
    if let Some(state) = env("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Ok(state.join("slicebed/dev"));
    }
    match env("HOME").filter(|p| !p.as_os_str().is_empty()) {
        Some(home) => Ok(home.join(".local/state/slicebed/dev")),
        None => bail!("cannot choose a testbed directory: neither XDG_STATE_HOME nor HOME is set (pass --dir)"),
    }
}

/// Finds a Slicebed binary next to slicectl's own executable, else on PATH.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    if let Some(p) = beside.as_ref().filter(|p| is_executable(p)) {
        return Ok(p.clone());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| is_executable(p))
        })
        .unwrap_or_default();
    on_path.with_context(|| {
        let dir = beside.as_deref().and_then(Path::parent).map(|d| d.display().to_string()).unwrap_or_default();
        format!("cannot find {name} next to slicectl ({dir}) or on PATH; build them with cargo build --release")
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `DIR/previous-context`: the context that was current before `dev up`.
fn previous_context_file(dir: &Path) -> PathBuf {
    dir.join("previous-context")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        assert_eq!(
            default_dir(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.local/state/slicebed/dev")
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/h"), ("XDG_STATE_HOME", "/s")])).unwrap(),
            PathBuf::from("/s/slicebed/dev")
        );
        assert!(default_dir(env(&[])).is_err());
    }

    #[test]
    fn missing_binaries_say_how_to_build_them() {
        let err = find_binary("no-such-slicebed-binary")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo build --release"), "{err}");
        assert!(find_binary("sh").is_ok());
    }
}
