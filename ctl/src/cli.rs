//! The command line: global flags and the command tree. Each group's arguments live next to its
//! code in `commands/`; this file only assembles them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{commands, output::Format};

/// Manage slices, nodes and people on a Slicebed testbed.
#[derive(Debug, Parser)]
#[command(
    name = "slicectl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Start a local testbed with `slicectl dev up`, or connect with `slicectl login`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// URL of slice-service [default: from the current context]
    #[arg(long, env = "SLICECTL_SERVER", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// API token, or `-` to read it from standard input (keeps it off command lines and out of
    /// shell history; SLICECTL_TOKEN works too) [default: from the current context]
    #[arg(
        long,
        env = "SLICECTL_TOKEN",
        global = true,
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) of the service; enables TLS
    #[arg(long, env = "SLICECTL_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Use this context of the config file instead of the current one
    #[arg(long, env = "SLICECTL_CONTEXT", global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Name this run's requests in the service's log (1 to 64 of A-Z a-z 0-9 . _ -)
    /// [default: a fresh id, printed with any error]
    #[arg(long, env = "SLICECTL_REQUEST_ID", global = true, value_name = "ID")]
    pub request_id: Option<String>,
    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, renew and delete slices
    #[command(subcommand)]
    Slice(commands::slice::SliceCmd),
    /// Run a command in many slivers at once, with prefixed output and exit codes
    Exec(commands::access::exec::ExecArgs),
    /// Open an interactive shell (or run a command) in one sliver
    Shell(commands::access::shell::ShellArgs),
    /// Print the container log of a sliver, or of every sliver of a slice
    Logs(commands::access::logs::LogsArgs),
    /// Copy files and directories into slivers, or out of one
    Cp(commands::access::cp::CpArgs),
    /// Where the named ports of a slice's slivers can be reached
    Endpoints(commands::access::endpoints::EndpointsArgs),
    /// Sites and nodes with their free capacity
    Resources,
    /// Read the event log
    Events(commands::events::EventsArgs),
    /// What slices, their slivers or nodes use right now (CPU, memory, network, disk)
    Top(commands::top::TopArgs),
    /// Push your own images to the testbed's image store, list and remove them
    #[command(subcommand)]
    Image(commands::image::ImageCmd),
    /// Manage nodes and enroll new ones
    #[command(subcommand)]
    Node(commands::node::NodeCmd),
    /// Manage sites
    #[command(subcommand)]
    Site(commands::site::SiteCmd),
    /// Manage users
    #[command(subcommand)]
    User(commands::user::UserCmd),
    /// Manage API tokens
    #[command(subcommand)]
    Token(commands::token::TokenCmd),
    /// Verify a token and save it as a context of the config file
    Login(commands::login::LoginArgs),
    /// List or switch the contexts of the config file
    #[command(subcommand)]
    Context(commands::context::ContextCmd),
    /// Show who the token belongs to
    Whoami,
    /// Run a local testbed: a service, a few nodes and a demo slice
    #[command(subcommand)]
    Dev(commands::dev::DevCmd),
    /// Print a shell completion script
    Completions(commands::completions::CompletionsArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "slicectl",
            "slice",
            "list",
            "-o",
            "json",
            "--server",
            "http://x:1",
        ])
        .unwrap();
        assert_eq!(cli.global.output, Format::Json);
        assert_eq!(cli.global.server.as_deref(), Some("http://x:1"));
    }
}
