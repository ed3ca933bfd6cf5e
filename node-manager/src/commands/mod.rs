//! The command line: one module per subcommand, each with `Args` and `run(args)`.

mod cleanup;
mod enroll;
mod image;
mod reclaim;
mod run;

use clap::{Parser, Subcommand};

/// Slicebed node manager: the agent that runs a node's slivers.
#[derive(Debug, Parser)]
#[command(name = "node-manager", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exchange a one-time enrollment token and a CSR for the node's client certificate and write the state dir.
    Enroll(enroll::Args),
    /// Run the agent until SIGTERM or SIGINT (containers keep running).
    Run(run::Args),
    /// Manage the base image.
    #[command(subcommand)]
    Image(image::Command),
    /// Remove every container and network this node created.
    Cleanup(cleanup::Args),
    /// Tell the running agent the machine's owner is back (on) or gone (off).
    #[command(subcommand)]
    Reclaim(reclaim::Command),
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll(a) => enroll::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Image(c) => image::run(c).await,
        Command::Cleanup(a) => cleanup::run(a).await,
        Command::Reclaim(c) => reclaim::run(c),
    }
}
