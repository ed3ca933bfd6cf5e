//! `slicectl token create|list|revoke|rotate`: API tokens. Secrets are printed once, at creation;
//! `rotate` replaces the token in use and, when it came from a context, saves the new one there
//! without printing it.

use anyhow::Result;
use clap::{Args, Subcommand};
use slicebed_proto::v1::{
    self as pb, CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, RotateTokenRequest,
};

use crate::{
    commands::user::duration,
    ctx::Ctx,
    output::{self, view::TokenView, Table},
    quantity::parse_duration,
    timefmt::{left, now_secs, rfc3339},
};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Issue a new token and print it
    Create(CreateArgs),
    /// List tokens (never their secrets)
    #[command(visible_alias = "ls")]
    List {
        /// Tokens of this user [default: yours]
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id (and every token created with it)
    Revoke {
        /// Token id, as `token list` shows it
        id: String,
    },
    /// Replace the token in use with a new one and revoke it (and the tokens created with it);
    /// the new one is saved in the context the old one came from, or printed
    Rotate {
        /// Lifetime of the new token, e.g. 30d [default: the service's]
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        ttl: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Owner [default: you]
    #[arg(long)]
    pub user: Option<String>,
    /// Lifetime, e.g. 30d [default: the service's]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Option<i64>,
    /// What it is for, e.g. "laptop"
    #[arg(long)]
    pub description: Option<String>,
}

pub async fn run(cmd: TokenCmd, ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    match cmd {
        TokenCmd::Create(a) => {
            let req = CreateTokenRequest {
                user: a.user.unwrap_or_default(),
                ttl: a.ttl.map(duration),
                description: a.description.unwrap_or_default(),
            };
            let resp = c.admin.create_token(req).await?.into_inner();
            let info = resp.info.unwrap_or_default();
            if ctx.json() {
                return output::json(
                    &serde_json::json!({ "token": resp.token, "info": TokenView::from(&info) }),
                );
            }
            let expires = rfc3339(info.expires_at.as_ref()).unwrap_or_default();
            output::out(&format!(
                "Token {} for {} (expires {expires}; shown only this once):\n\n  {}\n",
                info.id, info.user, resp.token
            ))
        }
        TokenCmd::List { user } => {
            // Every page: the service cuts answers at about 1 MiB.
            let (user, mut tokens, mut page_token) =
                (user.unwrap_or_default(), Vec::new(), String::new());
            loop {
                let req = ListTokensRequest {
                    user: user.clone(),
                    page_token,
                };
                let page = c.admin.list_tokens(req).await?.into_inner();
                tokens.extend(page.tokens);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if ctx.json() {
                return output::json(&tokens.iter().map(TokenView::from).collect::<Vec<_>>());
            }
            output::out(&token_table(&tokens, now_secs()).to_string())
        }
        TokenCmd::Rotate { ttl } => rotate(ctx, &mut c, ttl).await,
        TokenCmd::Revoke { id } => {
            c.admin
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await?;
            if ctx.json() {
                return output::json(&serde_json::json!({ "revoked": id }));
            }
            output::out(&format!("Revoked token {id}.\n"))
        }
    }
}

async fn rotate(ctx: &Ctx, c: &mut crate::client::Clients, ttl: Option<i64>) -> Result<()> {
    let settings = ctx.settings()?;
    let resp = c
        .admin
        .rotate_token(RotateTokenRequest {
            ttl: ttl.map(duration),
        })
        .await?
        .into_inner();
    let info = resp.info.unwrap_or_default();
    let expires = rfc3339(info.expires_at.as_ref()).unwrap_or_default();
    // The old token came from a context unless a flag or the environment gave it.
    let saved = match (&settings.context, &ctx.overrides.token) {
        (Some(name), None) => {
            let mut config = ctx.config()?;
            let context = config
                .contexts
                .get_mut(name)
                .ok_or_else(|| anyhow::anyhow!("context {name:?} vanished from the config"))?;
            context.token = Some(resp.token.clone());
            config.save(&ctx.config_path)?;
            Some(name.clone())
        }
        _ => None,
    };
    if ctx.json() {
        let mut v = serde_json::json!({ "info": TokenView::from(&info), "context": saved });
        if saved.is_none() {
            v["token"] = resp.token.clone().into();
        }
        return output::json(&v);
    }
    match saved {
        Some(name) => output::out(&format!(
            "Rotated: the old token is revoked; new token {} (expires {expires}) saved in context {name:?}.\n",
            info.id
        )),
        None => output::out(&format!(
            "Rotated: the old token is revoked. New token {} (expires {expires}; shown only this once):\n\n  {}\n",
            info.id, resp.token
        )),
    }
}

fn token_table(tokens: &[pb::TokenInfo], now: i64) -> Table {
    let mut t = Table::new([
        "ID",
        "USER",
        "DESCRIPTION",
        "CREATED",
        "EXPIRES IN",
        "STATUS",
    ]);
    for k in tokens {
        let expired = k.expires_at.as_ref().is_some_and(|e| e.seconds <= now);
        let status = if k.revoked {
            "revoked"
        } else if expired {
            "expired"
        } else {
            "active"
        };
        t.row([
            k.id.clone(),
            k.user.clone(),
            k.description.clone(),
            rfc3339(k.created_at.as_ref()).unwrap_or_default(),
            left(k.expires_at.as_ref(), now),
            status.into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::prost_types::Timestamp;

    #[test]
    fn token_status() {
        let tok = |revoked, exp| pb::TokenInfo {
            id: "t1".into(),
            revoked,
            expires_at: Some(Timestamp {
                seconds: exp,
                nanos: 0,
            }),
            ..Default::default()
        };
        let text = token_table(
            &[tok(true, 1000), tok(false, 10), tok(false, 1000 + 86_400)],
            1000,
        )
        .to_string();
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[1].ends_with("revoked"));
        assert!(rows[2].ends_with("expired"));
        assert!(rows[3].ends_with("active"));
        assert!(rows[3].contains("1d"));
    }
}
