//! One module per command group, each exposing `run(args, ctx)`. This file only dispatches.

pub mod access;
pub mod completions;
pub mod context;
pub mod dev;
pub mod events;
pub mod image;
pub mod login;
pub mod node;
pub mod node_drain;
pub mod resources;
pub mod site;
pub mod slice;
pub mod slice_show;
pub mod token;
pub mod top;
pub mod user;
pub mod whoami;

use anyhow::Result;

use crate::{
    cli::{Cli, Command},
    config::{self, Overrides},
    ctx::Ctx,
};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    crate::errors::set_request_id(g.request_id.as_deref())?;
    let ctx = Ctx {
        format: g.output,
        config_path: config::default_path()?,
        overrides: Overrides {
            server: g.server,
            token: config::token_from(g.token, std::io::stdin().lock())?,
            ca_cert: g.ca_cert,
            context: g.context,
        },
    };
    match cli.command {
        Command::Slice(cmd) => slice::run(cmd, &ctx).await,
        Command::Exec(args) => access::exec::run(args, &ctx).await,
        Command::Shell(args) => access::shell::run(args, &ctx).await,
        Command::Logs(args) => access::logs::run(args, &ctx).await,
        Command::Cp(args) => access::cp::run(args, &ctx).await,
        Command::Endpoints(args) => access::endpoints::run(args, &ctx).await,
        Command::Resources => resources::run(&ctx).await,
        Command::Events(args) => events::run(args, &ctx).await,
        Command::Top(args) => top::run(args, &ctx).await,
        Command::Image(cmd) => image::run(cmd, &ctx).await,
        Command::Node(cmd) => node::run(cmd, &ctx).await,
        Command::Site(cmd) => site::run(cmd, &ctx).await,
        Command::User(cmd) => user::run(cmd, &ctx).await,
        Command::Token(cmd) => token::run(cmd, &ctx).await,
        Command::Login(args) => login::run(args, &ctx).await,
        Command::Context(cmd) => context::run(cmd, &ctx),
        Command::Whoami => whoami::run(&ctx).await,
        Command::Dev(cmd) => dev::run(cmd, &ctx).await,
        Command::Completions(args) => completions::run(args),
    }
}

/// Parses `KEY=VALUE` (labels, environment variables).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".into()),
    }
}
