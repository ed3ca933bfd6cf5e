//! `slicectl completions bash|zsh|fish`: prints a completion script generated from the command tree.

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script to stdout, e.g. `slicectl completions bash > ~/.local/share/bash-completion/completions/slicectl`.
pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "slicectl", &mut buf);
    crate::output::out(&String::from_utf8_lossy(&buf))
}
