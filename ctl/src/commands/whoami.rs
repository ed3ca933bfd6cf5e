//! `slicectl whoami`: who the token belongs to, and where we are connected.

use anyhow::Result;
use serde_json::json;
use slicebed_proto::v1::{WhoAmIRequest, WhoAmIResponse};

use crate::{ctx::Ctx, output, output::view::role};

pub async fn run(ctx: &Ctx) -> Result<()> {
    let settings = ctx.settings()?;
    let mut c = ctx.connect().await?;
    let me = c.slices.who_am_i(WhoAmIRequest {}).await?.into_inner();
    if ctx.json() {
        return output::json(&json!({
            "user": me.user, "role": role(me.role()), "site": me.site,
            "server": c.server, "context": settings.context,
            "token_id": me.token_id,
            "token_expires_at": crate::timefmt::rfc3339(me.token_expires_at.as_ref()),
        }));
    }
    let via = settings
        .context
        .map(|n| format!(" (context {n})"))
        .unwrap_or_default();
    // When the token ends, so nobody is surprised by an expired admin token.
    let token = match crate::timefmt::rfc3339(me.token_expires_at.as_ref()) {
        Some(at) => format!("\ntoken {} expires {at}", me.token_id),
        None if !me.token_id.is_empty() => format!("\ntoken {} never expires", me.token_id),
        None => String::new(),
    };
    output::out(&format!("{} on {}{via}{token}\n", identity(&me), c.server))
}

/// "alice (user at site mit)", or "admin (admin)" for a user without a site.
pub fn identity(me: &WhoAmIResponse) -> String {
    if me.site.is_empty() {
        format!("{} ({})", me.user, role(me.role()))
    } else {
        format!("{} ({} at site {})", me.user, role(me.role()), me.site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::v1::Role;

    #[test]
    fn identities_read_well() {
        let me = |site: &str| WhoAmIResponse {
            user: "alice".into(),
            role: Role::Pi as i32,
            site: site.into(),
            ..Default::default()
        };
        assert_eq!(identity(&me("mit")), "alice (pi at site mit)");
        assert_eq!(identity(&me("")), "alice (pi)");
    }
}
