//! `slicectl events [--object O] [--limit N] [--follow]`: the append-only event log. Following
//! uses the WatchEvents stream (never polling), one line per event, so it scales to a busy log.

use anyhow::Result;
use clap::Args;
use slicebed_proto::v1::{self as pb, ListEventsRequest};

use crate::{
    client::Clients,
    ctx::Ctx,
    output::{self, view::EventView, Table},
    timefmt::rfc3339,
    watch::EventWatch,
};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events about this object, e.g. slice/demo or node/node-mit
    #[arg(long)]
    pub object: Option<String>,
    /// At most this many (the newest)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Keep printing new events as they happen (Ctrl-C to stop)
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn run(args: EventsArgs, ctx: &Ctx) -> Result<()> {
    let c = ctx.connect().await?;
    show(
        &c,
        ctx,
        args.object.unwrap_or_default(),
        args.limit,
        args.follow,
    )
    .await
}

/// Prints the last `limit` events of `object` (all when empty); with `follow`, then streams new
/// ones until interrupted.
pub async fn show(c: &Clients, ctx: &Ctx, object: String, limit: u32, follow: bool) -> Result<()> {
    let req = ListEventsRequest {
        object: object.clone(),
        after_id: 0,
        limit,
        before_id: 0,
    };
    let resp = c.slices.clone().list_events(req).await?.into_inner();
    let events = resp.events;
    if resp.truncated && !ctx.json() {
        // The service cut a page of very large events; say so rather than pretend it is all.
        eprintln!(
            "note: older events were left off to keep the answer small; the oldest shown is {}",
            events.first().map(|e| e.id).unwrap_or(0)
        );
    }
    if !follow {
        if ctx.json() {
            return output::json(&events.iter().map(EventView::from).collect::<Vec<_>>());
        }
        if events.is_empty() {
            return output::out("No events.\n");
        }
        return output::out(&event_table(&events).to_string());
    }
    if !ctx.json() {
        output::out(&format!("{}\n", line_header()))?;
    }
    for e in &events {
        emit(ctx, e)?;
    }
    // Start the stream right after what was just printed: the service replays anything written
    // in between, so no event falls through the gap.
    let after = events.last().map(|e| e.id).unwrap_or(0);
    let mut watch = EventWatch::open(c, &object, after).await?;
    loop {
        let e = watch.next().await?;
        emit(ctx, &e)?;
    }
}

/// One event as it is followed: a line for people, a JSON object per line for scripts.
fn emit(ctx: &Ctx, e: &pb::Event) -> Result<()> {
    let text = if ctx.json() {
        serde_json::to_string(&EventView::from(e))?
    } else {
        line(e)
    };
    output::out(&format!("{text}\n"))
}

/// Column widths of followed lines. A stream cannot be measured in advance like a table, so the
/// columns have fixed minimum widths that fit the usual actors and objects; longer values push
/// the rest of their line right instead of being cut.
const TIME_W: usize = 20;
const ACTOR_W: usize = 16;
const OBJECT_W: usize = 24;
const ACTION_W: usize = 16;

fn columns(time: &str, actor: &str, object: &str, action: &str, detail: &str) -> String {
    format!(
        "{time:<TIME_W$}  {actor:<ACTOR_W$}  {object:<OBJECT_W$}  {action:<ACTION_W$}  {detail}"
    )
    .trim_end()
    .to_string()
}

fn line_header() -> String {
    columns("TIME", "ACTOR", "OBJECT", "ACTION", "DETAIL")
}

/// "2024-05-01T12:00:03Z  alice  slice/demo  create  3 slivers".
pub fn line(e: &pb::Event) -> String {
    columns(
        &rfc3339(e.time.as_ref()).unwrap_or_else(|| "-".into()),
        &e.actor,
        &e.object,
        &e.action,
        &e.detail,
    )
}

fn event_table(events: &[pb::Event]) -> Table {
    let mut t = Table::new(["ID", "TIME", "ACTOR", "OBJECT", "ACTION", "DETAIL"]);
    for e in events {
        t.row([
            e.id.to_string(),
            rfc3339(e.time.as_ref()).unwrap_or_default(),
            e.actor.clone(),
            e.object.clone(),
            e.action.clone(),
            e.detail.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::prost_types::Timestamp;

    fn event(actor: &str, object: &str, action: &str, detail: &str) -> pb::Event {
        pb::Event {
            id: 7,
            time: Some(Timestamp {
                seconds: 1_714_564_803,
                nanos: 0,
            }),
            actor: actor.into(),
            object: object.into(),
            action: action.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn followed_events_are_aligned_lines() {
        let a = line(&event("alice", "slice/demo", "create", "3 slivers"));
        let b = line(&event("node/node-mit", "sliver/demo-0-ab", "running", ""));
        assert_eq!(
            a,
            "2024-05-01T12:00:03Z  alice             slice/demo                create            3 slivers"
        );
        assert_eq!(a.find("slice/"), b.find("sliver/"), "{a}\n{b}");
        assert_eq!(b.find("running"), a.find("create"), "{a}\n{b}");
        assert!(!b.ends_with(' '), "no trailing blanks: {b:?}");
        assert_eq!(line_header().find("OBJECT"), a.find("slice/"));
    }

    #[test]
    fn long_values_push_instead_of_cutting() {
        let long = "sliver/a-very-long-slice-name-0-abcdef";
        let l = line(&event("node/node-mit", long, "deleted", "drained"));
        assert!(l.contains(&format!("{long}  deleted  ")), "{l}");
    }

    #[test]
    fn followed_json_is_one_object_per_line() {
        let v = serde_json::to_string(&EventView::from(&event("bob", "node/n", "drain", "1h")))
            .unwrap();
        assert!(!v.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(back["time"], "2024-05-01T12:00:03Z");
        assert_eq!(back["object"], "node/n");
        assert_eq!(back["id"], 7);
    }
}
