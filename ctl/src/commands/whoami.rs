//! `slicectl whoami`: who the token belongs to, and where we are connected.

use anyhow::Result;
use serde_json::json;
use slicebed_proto::v1::WhoAmIRequest;

use crate::{ctx::Ctx, output, output::view::role};

pub async fn run(ctx: &Ctx) -> Result<()> {
    let settings = ctx.settings()?;
    let mut c = ctx.connect().await?;
    let me = c.slices.who_am_i(WhoAmIRequest {}).await?.into_inner();
    if ctx.json() {
        return output::json(&json!({
            "user": me.user, "role": role(me.role()), "site": me.site,
            "server": c.server, "context": settings.context,
        }));
    }
    let via = settings
        .context
        .map(|n| format!(" (context {n})"))
        .unwrap_or_default();
    output::out(&format!(
        "{} ({}) at site {}, on {}{via}\n",
        me.user,
        role(me.role()),
        me.site,
        c.server
    ))
}
