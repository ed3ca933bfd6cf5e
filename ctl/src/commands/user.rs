//! `slicectl user create|list`: people, their roles and home sites. A new user's token is printed
//! exactly once, since the service stores only its hash.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use slicebed_proto::{
    prost_types::Duration,
    v1::{self as pb, CreateUserRequest, ListUsersRequest},
};

use crate::{
    ctx::Ctx,
    output::{
        self,
        view::{role, TokenView, UserView},
        Table,
    },
    quantity::parse_duration,
    timefmt::rfc3339,
};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user and print their first token
    Create(CreateArgs),
    /// List users
    #[command(visible_alias = "ls")]
    List {
        /// Only users of this site
        #[arg(long)]
        site: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Pi,
    User,
}

impl From<RoleArg> for pb::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => pb::Role::Admin,
            RoleArg::Pi => pb::Role::Pi,
            RoleArg::User => pb::Role::User,
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User name, a DNS label
    pub name: String,
    /// Home site
    #[arg(long)]
    pub site: String,
    /// Role
    #[arg(long, value_enum, default_value_t = RoleArg::User)]
    pub role: RoleArg,
    /// Lifetime of the first token, e.g. 30d [default: the service's]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Option<i64>,
}

/// A protobuf Duration of whole seconds.
pub fn duration(secs: i64) -> Duration {
    Duration {
        seconds: secs,
        nanos: 0,
    }
}

pub async fn run(cmd: UserCmd, ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    match cmd {
        UserCmd::Create(a) => {
            let req = CreateUserRequest {
                name: a.name,
                role: pb::Role::from(a.role) as i32,
                site: a.site,
                token_ttl: a.ttl.map(duration),
            };
            let resp = c.admin.create_user(req).await?.into_inner();
            let user = resp.user.unwrap_or_default();
            if ctx.json() {
                return output::json(&serde_json::json!({
                    "user": UserView::from(&user),
                    "token": resp.token,
                    "token_info": resp.token_info.as_ref().map(TokenView::from),
                }));
            }
            let expires = resp
                .token_info
                .as_ref()
                .and_then(|t| rfc3339(t.expires_at.as_ref()))
                .unwrap_or_default();
            output::out(&format!(
                "Created user {} ({}, site {}).\n\nToken (shown only this once; expires {expires}):\n\n  {}\n\n\
                 They can log in with the command below, pasting the token when it waits (a token\n\
                 on a command line shows in `ps` and shell history), then replace it with one of\n\
                 their own (`slicectl token rotate`):\n\n  slicectl login --server {} --token - --name {}\n",
                user.name,
                role(user.role()),
                user.site,
                resp.token,
                c.server,
                user.name
            ))
        }
        UserCmd::List { site } => {
            // Every page: the service cuts answers at about 1 MiB.
            let (site, mut users, mut page_token) =
                (site.unwrap_or_default(), Vec::new(), String::new());
            loop {
                let req = ListUsersRequest {
                    site: site.clone(),
                    page_token,
                };
                let page = c.admin.list_users(req).await?.into_inner();
                users.extend(page.users);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if ctx.json() {
                return output::json(&users.iter().map(UserView::from).collect::<Vec<_>>());
            }
            let mut t = Table::new(["NAME", "ROLE", "SITE", "CREATED"]);
            for u in &users {
                t.row([
                    u.name.clone(),
                    role(u.role()),
                    u.site.clone(),
                    rfc3339(u.created_at.as_ref()).unwrap_or_default(),
                ]);
            }
            output::out(&t.to_string())
        }
    }
}
