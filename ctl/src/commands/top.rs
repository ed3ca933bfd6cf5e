//! `slicectl top`: what slices, their slivers and nodes use right now, as node managers measure
//! it (CPU, memory, network, disk against the limits). `top` lists the caller's slices, `top
//! SLICE` its slivers, `top --nodes` every node; `--history` adds each sliver's (or node's)
//! recent past, `--watch` redraws the table until interrupted.

mod render;
mod view;

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use slicebed_proto::v1 as pb;

use crate::{
    client::Clients, commands::user::duration, ctx::Ctx, output, quantity::parse_duration,
};

pub use render::sliver_usage_table;
pub use view::{SliceTop, UsageView};

/// `slicectl top [SLICE] [--nodes]`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Show this slice's slivers (default: one line per slice you may see)
    #[arg(conflicts_with = "nodes")]
    pub slice: Option<String>,
    /// Show every node's total instead
    #[arg(long)]
    pub nodes: bool,
    /// Also show the recent past: up to 30m every measurement, longer in 5-minute buckets
    /// (kept 2 days)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub history: Option<i64>,
    /// Redraw every few seconds until interrupted (tables only)
    #[arg(short, long)]
    pub watch: bool,
    /// Time between redraws with --watch
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION", requires = "watch")]
    pub interval: i64,
}

/// Every page of the caller's slices' usage.
async fn all_slices(c: &mut Clients) -> Result<Vec<pb::SliceUsage>> {
    let (mut out, mut page_token) = (Vec::new(), String::new());
    loop {
        let r = c
            .slices
            .list_slice_usage(pb::ListSliceUsageRequest { page_token })
            .await?
            .into_inner();
        out.extend(r.slices);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = r.next_page_token;
    }
}

/// One reading in the chosen format: JSON, or a table.
async fn once(a: &TopArgs, c: &mut Clients, ctx: &Ctx) -> Result<String> {
    let history = a.history.filter(|s| *s > 0).map(duration);
    if a.nodes {
        let nodes = c
            .slices
            .list_node_usage(pb::ListNodeUsageRequest {
                history,
                node: String::new(),
            })
            .await?
            .into_inner()
            .nodes;
        return Ok(match ctx.json() {
            true => view::json(&view::nodes_view(&nodes))?,
            false => render::node_table(&nodes).to_string(),
        });
    }
    if let Some(name) = &a.slice {
        let u = c
            .slices
            .get_slice_usage(pb::GetSliceUsageRequest {
                name: name.clone(),
                history,
            })
            .await?
            .into_inner();
        return Ok(match ctx.json() {
            true => view::json(&SliceTop::from(&u))?,
            false => render::slice_text(&u),
        });
    }
    if history.is_some() {
        bail!("--history needs a slice (slicectl top SLICE --history 1h) or --nodes");
    }
    let slices = all_slices(c).await?;
    Ok(match ctx.json() {
        true => {
            let rows: Vec<SliceTop> = slices
                .iter()
                .map(|s| SliceTop::from(s).without_slivers())
                .collect();
            view::json(&rows)?
        }
        false if slices.is_empty() => "No live slices.\n".into(),
        false => render::slices_table(&slices).to_string(),
    })
}

pub async fn run(a: TopArgs, ctx: &Ctx) -> Result<()> {
    if a.watch && ctx.json() {
        bail!("--watch redraws a table; leave it out with -o json (or call top in a loop)");
    }
    let mut c = ctx.connect().await?;
    if !a.watch {
        return output::out(&once(&a, &mut c, ctx).await?);
    }
    let every = Duration::from_secs(a.interval.max(1) as u64);
    loop {
        let text = once(&a, &mut c, ctx).await?;
        // Clear the screen and draw from the top left.
        output::out(&format!("\x1b[2J\x1b[H{text}"))?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
