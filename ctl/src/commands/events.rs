//! `slicectl events [--object O] [--limit N] [--follow]`: the append-only event log.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use slicebed_proto::v1::{self as pb, ListEventsRequest};

use crate::{
    client::Clients,
    ctx::Ctx,
    output::{self, view::EventView, Table},
    timefmt::rfc3339,
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
    let mut c = ctx.connect().await?;
    show(
        &mut c,
        ctx,
        args.object.unwrap_or_default(),
        args.limit,
        args.follow,
    )
    .await
}

/// Prints the events of `object` (all when empty); with `follow`, polls for new ones.
pub async fn show(
    c: &mut Clients,
    ctx: &Ctx,
    object: String,
    limit: u32,
    follow: bool,
) -> Result<()> {
    let req = ListEventsRequest {
        object: object.clone(),
        after_id: 0,
        limit,
    };
    let events = c.slices.list_events(req).await?.into_inner().events;
    if ctx.json() && !follow {
        return output::json(&events.iter().map(EventView::from).collect::<Vec<_>>());
    }
    print(ctx, &events, true)?;
    if !follow {
        return Ok(());
    }
    let mut last = events.last().map(|e| e.id).unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let req = ListEventsRequest {
            object: object.clone(),
            after_id: last,
            limit: 1000,
        };
        let events = c.slices.list_events(req).await?.into_inner().events;
        print(ctx, &events, false)?;
        last = events.last().map(|e| e.id).unwrap_or(last);
    }
}

/// Tables for people; one JSON object per line when following, so scripts can stream them.
fn print(ctx: &Ctx, events: &[pb::Event], header: bool) -> Result<()> {
    if ctx.json() {
        for e in events {
            output::out(&format!(
                "{}\n",
                serde_json::to_string(&EventView::from(e))?
            ))?;
        }
        return Ok(());
    }
    if events.is_empty() {
        if header {
            output::out("No events.\n")?;
        }
        return Ok(());
    }
    let text = event_table(events).to_string();
    let body = if header {
        text.as_str()
    } else {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    };
    output::out(body)
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
