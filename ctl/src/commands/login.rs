//! `slicectl login --server URL --token - [--name CTX] [--ca-cert FILE]`: checks the token with
//! WhoAmI first (a typo never lands in the config), then saves it as a context and makes it current.
//! `--token -` reads the token from standard input, so it never shows on a command line.

use anyhow::{Context as _, Result};
use clap::Args;
use slicebed_proto::v1::WhoAmIRequest;

use crate::{
    client::{self, normalize_url},
    config::{Context, Settings},
    ctx::Ctx,
    output::{self, view::role},
};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Name of the context to save
    #[arg(long, default_value = "default")]
    pub name: String,
}

pub async fn run(args: LoginArgs, ctx: &Ctx) -> Result<()> {
    let o = &ctx.overrides;
    let server = o
        .server
        .clone()
        .context("login needs --server URL (or SLICECTL_SERVER)")?;
    let token = o
        .token
        .clone()
        .context("login needs a token: --token - (then paste it), or SLICECTL_TOKEN")?;
    let ca_cert = match &o.ca_cert {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("cannot read CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    let server = normalize_url(&server, ca_cert.is_some());
    let settings = Settings {
        server: server.clone(),
        token: Some(token.clone()),
        ca_cert: ca_cert.clone(),
        context: None,
    };
    let mut c = client::connect(&settings).await?;
    let me = c.slices.who_am_i(WhoAmIRequest {}).await?.into_inner();

    let mut config = ctx.config()?;
    config.contexts.insert(
        args.name.clone(),
        Context {
            server: server.clone(),
            token: Some(token),
            ca_cert,
        },
    );
    config.current = Some(args.name.clone());
    config.save(&ctx.config_path)?;

    if ctx.json() {
        return output::json(&serde_json::json!({
            "user": me.user, "role": role(me.role()), "site": me.site,
            "server": server, "context": args.name,
        }));
    }
    output::out(&format!(
        "Logged in to {server} as {}.\nSaved as context {:?} in {} and made it current.\n",
        super::whoami::identity(&me),
        args.name,
        ctx.config_path.display()
    ))
}
