//! The caller's slices (`GET /api/mine`): one HTML fragment with each slice the caller may
//! see, its slivers, where they run, their state, message and ports, and charts of what each
//! used over the last half hour (`sparkline`).
//!
//! What is listed is exactly what `ListSlices` would give the same caller: it is read through
//! `Core::list_slices`, whose visibility rule (owner or member; a PI their site's; an admin
//! all) is the API's. Every value from users and nodes goes through `html::Text`.

use std::collections::HashMap;
use std::fmt::Write;

use super::html::Text;
use super::sparkline;
use crate::auth::Principal;
use crate::core::{Core, SliceStatus, SliceView, SliverView};
use crate::error::Result;
use crate::model::Millis;
use crate::state::SliverState;
use crate::usage::{SeriesKind, UsagePoint};

/// Usage histories by sliver id, now, and since when a measurement is current (the node TTL,
/// as the usage API has it).
struct Usage {
    history: HashMap<String, Vec<UsagePoint>>,
    now: Millis,
    current_since: Millis,
}

/// Slices shown on the page; `slicectl slice list` shows the rest.
pub const SHOWN: usize = 50;

/// The fragment for `p`.
pub async fn render(core: &Core, p: &Principal) -> Result<String> {
    let who = p.user()?;
    let page = core.list_slices(p, false, "", None, SHOWN).await?;
    let names: Vec<&str> = page.views.iter().map(|v| v.slice.name.as_str()).collect();
    // Only slivers of slices the caller may see; the window is held in memory (no query).
    let ids: Vec<String> = page
        .views
        .iter()
        .flat_map(|v| &v.slivers)
        .filter(|s| s.sliver.state != SliverState::Deleted)
        .map(|s| s.sliver.id.clone())
        .collect();
    let usage = Usage {
        history: core
            .usage_history(SeriesKind::Sliver, &ids, sparkline::WINDOW)
            .await?,
        now: core.now_ms(),
        current_since: core.now_ms() - core.cfg.node_ttl.as_millis() as i64,
    };
    let mut out = format!(
        "<div class=\"who\" data-user=\"{user}\" data-slices=\"{slices}\">Signed in as \
         <strong>{user}</strong> ({role}{site}). <button id=\"forget\" type=\"button\">\
         Forget token</button></div>",
        user = Text(&who.name),
        slices = Text(&names.join(" ")),
        role = who.role.as_str(),
        site = match &who.site {
            Some(s) => format!(" of site {}", Text(s)),
            None => String::new(),
        },
    );
    if page.views.is_empty() {
        out.push_str("<p class=\"none\">No live slices you can see.</p>");
    }
    for v in &page.views {
        out.push_str(&slice(v, &usage));
    }
    if page.next.is_some() {
        let _ = write!(
            out,
            "<p class=\"more\">The first {SHOWN} slices are shown; <code>slicectl slice \
             list</code> shows them all.</p>"
        );
    }
    Ok(out)
}

fn status_name(s: SliceStatus) -> &'static str {
    match s {
        SliceStatus::Provisioning => "provisioning",
        SliceStatus::Ready => "ready",
        SliceStatus::Degraded => "degraded",
        SliceStatus::Deleted => "deleted",
        SliceStatus::Expired => "expired",
    }
}

/// Epoch milliseconds as `2026-12-01 16:40 UTC`.
pub fn when(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "?".into(),
    }
}

fn slice(v: &SliceView, usage: &Usage) -> String {
    let s = &v.slice;
    let status = status_name(v.status());
    let members = if s.members.is_empty() {
        String::new()
    } else {
        format!(", members {}", Text(&s.members.join(", ")))
    };
    let mut out = format!(
        "<article class=\"slice\" data-slice=\"{name}\" data-status=\"{status}\"><h3>\
         <span class=\"slice-name\">{name}</span> <span class=\"status {status}\">{status}\
         </span></h3><p class=\"meta\">Owner {owner}{members}; image <code>{image}</code>; \
         lease ends {lease}</p>",
        name = Text(&s.name),
        owner = Text(&s.owner),
        image = Text(&s.image),
        lease = when(s.lease_expires_at),
    );
    if !s.description.is_empty() {
        let _ = write!(out, "<p class=\"description\">{}</p>", Text(&s.description));
    }
    let _ = write!(
        out,
        "<table class=\"slivers\"><thead><tr><th>#</th><th>Node</th><th>Site</th>\
         <th>State</th><th>Message</th><th>Ports</th><th>Usage, last {} min</th></tr>\
         </thead><tbody>",
        sparkline::WINDOW.as_secs() / 60
    );
    for sv in &v.slivers {
        out.push_str(&sliver(sv, usage));
    }
    out.push_str("</tbody></table></article>");
    out
}

fn sliver(v: &SliverView, usage: &Usage) -> String {
    let sv = &v.sliver;
    // A node that cannot be heard from may be wrong about its slivers: say so.
    let state = if v.unknown {
        "unknown"
    } else {
        sv.state.as_str()
    };
    let mut message = sv.last_error.clone();
    if let Some(code) = sv.exit_code {
        // Nodes often say it already.
        let said = format!("exit code {code}");
        if !message.contains(&said) {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&said);
        }
    }
    let ports: Vec<String> = sv
        .ports
        .iter()
        .map(|p| {
            format!(
                "{} {}:{}",
                Text(&p.name),
                Text(&v.node_address),
                p.host_port
            )
        })
        .collect();
    format!(
        "<tr data-sliver=\"{id}\" data-state=\"{state}\"><td>{index}</td><td>{node}</td>\
         <td>{site}</td><td><span class=\"state {state}\">{state}</span></td>\
         <td class=\"message\">{message}</td><td>{ports}</td><td>{used}</td></tr>",
        id = Text(&sv.id),
        index = sv.index,
        node = Text(&sv.node),
        site = Text(&sv.site),
        message = Text(&message),
        ports = ports.join("<br>"),
        used = if sv.state == SliverState::Deleted {
            String::new()
        } else {
            let points = usage.history.get(&sv.id).map(Vec::as_slice);
            // A silent node's last figures are not current, however recent they look.
            let since = if v.unknown {
                i64::MAX
            } else {
                usage.current_since
            };
            sparkline::cell(points.unwrap_or_default(), sv.resources, usage.now, since)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_796_143_200_000), "2026-12-01 16:40 UTC");
    }

    #[test]
    fn status_names_are_the_apis() {
        assert_eq!(status_name(SliceStatus::Degraded), "degraded");
    }
}
