//! `slicectl context list|use NAME|delete NAME`: the named contexts of the config file. Works offline.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;

use crate::{
    ctx::Ctx,
    output::{self, Table},
};

#[derive(Debug, Subcommand)]
pub enum ContextCmd {
    /// List contexts; the current one is marked with *
    #[command(visible_alias = "ls")]
    List,
    /// Make a context current
    Use {
        /// Context name
        name: String,
    },
    /// Remove a context from the config file
    #[command(visible_alias = "rm")]
    Delete {
        /// Context name
        name: String,
    },
}

pub fn run(cmd: ContextCmd, ctx: &Ctx) -> Result<()> {
    let mut config = ctx.config()?;
    match cmd {
        ContextCmd::List => {
            if ctx.json() {
                let list: Vec<_> = config
                    .contexts
                    .iter()
                    .map(|(name, c)| {
                        json!({
                            "name": name, "server": c.server, "ca_cert": c.ca_cert,
                            "current": config.current.as_deref() == Some(name.as_str()),
                        })
                    })
                    .collect();
                return output::json(&list);
            }
            if config.contexts.is_empty() {
                return output::out(
                    "No contexts yet. Create one with: slicectl login --server URL --token TOKEN\n",
                );
            }
            let mut t = Table::new(["CURRENT", "NAME", "SERVER", "TLS"]);
            for (name, c) in &config.contexts {
                let mark = if config.current.as_deref() == Some(name.as_str()) {
                    "*"
                } else {
                    ""
                };
                t.row([
                    mark,
                    name,
                    &c.server,
                    if c.ca_cert.is_some() { "yes" } else { "no" },
                ]);
            }
            output::out(&t.to_string())
        }
        ContextCmd::Use { name } => {
            if !config.contexts.contains_key(&name) {
                bail!("no context named {name:?} (see slicectl context list)");
            }
            config.current = Some(name.clone());
            config.save(&ctx.config_path)?;
            output::out(&format!("Switched to context {name:?}.\n"))
        }
        ContextCmd::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                bail!("no context named {name:?} (see slicectl context list)");
            }
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            config.save(&ctx.config_path)?;
            output::out(&format!("Deleted context {name:?}.\n"))
        }
    }
}
