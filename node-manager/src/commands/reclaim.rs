//! `node-manager reclaim on|off|status`: sets or clears the owner's flag in the state dir,
//! which the running agent polls every second. Works whether or not the agent runs.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use node_manager::reclaim;

#[derive(Debug, clap::Args)]
pub struct Dir {
    /// The node's state directory (as given to `run`).
    #[arg(long)]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The owner is back: pause every sliver until `off`.
    On {
        #[command(flatten)]
        dir: Dir,
        /// Why, shown to researchers in the sliver's status.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The owner is gone: resume the slivers (unless the load still holds the node).
    Off(Dir),
    /// Print whether the owner holds the node.
    Status(Dir),
}

fn existing(dir: &Dir) -> anyhow::Result<&PathBuf> {
    anyhow::ensure!(
        dir.state_dir.is_dir(),
        "state dir {} does not exist",
        dir.state_dir.display()
    );
    Ok(&dir.state_dir)
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::On { dir, reason } => {
            let dir = existing(&dir)?;
            let flag = reclaim::set(dir, &reason, SystemTime::now())
                .with_context(|| format!("cannot write {}", reclaim::flag_path(dir).display()))?;
            println!(
                "reclaimed: slivers are paused within a few seconds ({})",
                flag.message()
            );
        }
        Command::Off(dir) => {
            let dir = existing(&dir)?;
            let was = reclaim::clear(dir)
                .with_context(|| format!("cannot remove {}", reclaim::flag_path(dir).display()))?;
            println!(
                "{}",
                if was {
                    "released: slivers resume within a few seconds"
                } else {
                    "released (it was not reclaimed)"
                }
            );
        }
        Command::Status(dir) => {
            let dir = existing(&dir)?;
            match reclaim::read(dir)
                .with_context(|| format!("cannot read {}", reclaim::flag_path(dir).display()))?
            {
                Some(f) => {
                    let since = UNIX_EPOCH + Duration::from_secs(f.since);
                    let ago = SystemTime::now()
                        .duration_since(since)
                        .map_or(0, |d| d.as_secs());
                    println!("on: {} (since {} unix, {ago}s ago)", f.message(), f.since);
                }
                None => println!("off"),
            }
        }
    }
    Ok(())
}
