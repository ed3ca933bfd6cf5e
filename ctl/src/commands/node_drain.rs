//! `slicectl node drain NODE [--deadline D] [--wait]`: stop placing slivers on a node and,
//! with `--wait`, follow it until no live sliver remains there.
//!
//! Sliver events are written under `sliver/ID` with the node as actor, not under `node/NODE`, so
//! the wait watches every event it may see and re-reads only on those that can concern the node.

use std::{io::IsTerminal, time::Duration};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use slicebed_proto::v1::{self as pb, DrainNodeRequest, GetNodeRequest};
use tonic::Code;

use crate::{
    client::Clients,
    commands::user::duration,
    ctx::Ctx,
    output::{
        self,
        view::{node_state, NodeView},
    },
    timefmt::{left, now_secs, rfc3339},
    wait::FALLBACK_POLL,
    watch::{self, EventWatch},
};

/// How many sliver names the progress line lists before "…".
const NAMES_SHOWN: usize = 5;

pub async fn run(
    c: &mut Clients,
    ctx: &Ctx,
    name: String,
    deadline: Option<i64>,
    wait: bool,
) -> Result<()> {
    let req = DrainNodeRequest {
        name: name.clone(),
        deadline: deadline.map(duration),
    };
    let node = c.admin.drain_node(req).await?.into_inner();
    if !wait {
        if ctx.json() {
            return output::json(&NodeView::from(&node));
        }
        return output::out(&summary(&node, now_secs()));
    }
    if !ctx.json() {
        output::out(&summary(&node, now_secs()))?;
    }
    let last = until_empty(c, &name, ctx.json()).await?;
    match (ctx.json(), last) {
        (true, Some(n)) => output::json(&NodeView::from(&n)),
        (true, None) => output::json(&serde_json::json!({ "deleted": name })),
        (false, Some(_)) => output::out(&format!("No slivers left on {name}.\n")),
        (false, None) => output::out(&format!("Node {name} was deleted.\n")),
    }
}

/// "Node node-mit is draining: ..." with what happens to its slivers.
pub fn summary(n: &pb::Node, now: i64) -> String {
    let count = plural(n.slivers);
    let fate = match (n.slivers, rfc3339(n.drain_deadline.as_ref())) {
        (0, _) => "it has no slivers left".to_string(),
        (_, Some(at)) => format!(
            "{count} not re-placed elsewhere will be removed at {at} (in {})",
            left(n.drain_deadline.as_ref(), now)
        ),
        (_, None) => format!(
            "{count} {} until it is enabled or deleted",
            if n.slivers == 1 { "stays" } else { "stay" }
        ),
    };
    format!(
        "Node {} is {}: no new slivers go there; {fate}.\n",
        n.name,
        node_state(n.state())
    )
}

fn plural(n: u32) -> String {
    format!("{n} sliver{}", if n == 1 { "" } else { "s" })
}

/// "3 slivers left on node-mit: demo/0, exp/2, exp/3".
pub fn progress_line(node: &str, count: u32, names: &[String]) -> String {
    let mut s = format!("{} left on {node}", plural(count));
    if !names.is_empty() {
        let mut shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
        if names.len() > NAMES_SHOWN {
            shown.push_str(", …");
        }
        s.push_str(&format!(": {shown}"));
    }
    s
}

/// Live slivers on `node` as "slice/index". Deleted slices are included: their slivers may still
/// be stopping there.
fn slivers_on(slices: &[pb::Slice], node: &str) -> Vec<String> {
    let mut names: Vec<String> = slices
        .iter()
        .flat_map(|s| s.slivers.iter().map(move |v| (s, v)))
        .filter(|(_, v)| v.node == node && v.state() != pb::SliverState::Deleted)
        .map(|(s, v)| format!("{}/{}", s.name, v.index))
        .collect();
    names.sort();
    names
}

/// Whether an event may change what is left on `node`.
fn concerns(e: &pb::Event, node: &str) -> bool {
    let me = format!("node/{node}");
    e.object == me || e.actor == me || e.object.starts_with("sliver/")
}

/// Follows the node until GetNode counts no live sliver; None if the node was deleted meanwhile.
async fn until_empty(c: &mut Clients, name: &str, json: bool) -> Result<Option<pb::Node>> {
    let mut events = EventWatch::open(c, "", 0).await.ok();
    let mut progress = Progress::new(json);
    loop {
        let node = match c.admin.get_node(GetNodeRequest { name: name.into() }).await {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                progress.finish();
                return Ok(None);
            }
            Err(status) => return Err(status.into()),
        };
        if node.slivers == 0 {
            progress.finish();
            return Ok(Some(node));
        }
        let slices = super::slice::list_all(c, true, String::new()).await?;
        progress.show(progress_line(
            name,
            node.slivers,
            &slivers_on(&slices, name),
        ));
        watch::wake(&mut events, FALLBACK_POLL, |e| concerns(e, name)).await;
    }
}

/// A spinner on a terminal, a line per change otherwise, nothing for JSON.
enum Progress {
    Spinner(ProgressBar),
    Lines(String),
    Quiet,
}

impl Progress {
    fn new(json: bool) -> Self {
        if json {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines(String::new());
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {msg}").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::Spinner(bar)
    }

    fn show(&mut self, line: String) {
        match self {
            Progress::Spinner(bar) => bar.set_message(line),
            Progress::Lines(last) if *last != line => {
                eprintln!("{line}");
                *last = line;
            }
            _ => {}
        }
    }

    fn finish(self) {
        if let Progress::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::prost_types::Timestamp;

    fn node(slivers: u32, deadline: Option<i64>) -> pb::Node {
        pb::Node {
            name: "node-mit".into(),
            state: pb::NodeState::Draining as i32,
            slivers,
            drain_deadline: deadline.map(|seconds| Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn summaries_say_what_happens_to_slivers() {
        assert_eq!(
            summary(&node(3, Some(1_714_564_803)), 1_714_564_803 - 3600),
            "Node node-mit is draining: no new slivers go there; 3 slivers not re-placed \
             elsewhere will be removed at 2024-05-01T12:00:03Z (in 1h).\n"
        );
        assert!(summary(&node(1, None), 0).contains("; 1 sliver stays until it is enabled"));
        assert!(summary(&node(0, Some(5)), 0).contains("; it has no slivers left."));
    }

    #[test]
    fn progress_names_what_is_left() {
        assert_eq!(
            progress_line("node-mit", 1, &[]),
            "1 sliver left on node-mit"
        );
        let names: Vec<String> = (0..7).map(|i| format!("exp/{i}")).collect();
        assert_eq!(
            progress_line("node-mit", 7, &names),
            "7 slivers left on node-mit: exp/0, exp/1, exp/2, exp/3, exp/4, …"
        );
    }

    #[test]
    fn only_live_slivers_on_the_node_count() {
        let sliver = |index, node: &str, state: pb::SliverState| pb::Sliver {
            index,
            node: node.into(),
            state: state as i32,
            ..Default::default()
        };
        let s = pb::Slice {
            name: "exp".into(),
            slivers: vec![
                sliver(2, "node-mit", pb::SliverState::Stopping),
                sliver(0, "node-mit", pb::SliverState::Running),
                sliver(1, "node-eth", pb::SliverState::Running),
                sliver(3, "node-mit", pb::SliverState::Deleted),
            ],
            ..Default::default()
        };
        assert_eq!(slivers_on(&[s], "node-mit"), ["exp/0", "exp/2"]);
    }

    #[test]
    fn events_about_the_node_or_slivers_wake_the_wait() {
        let e = |actor: &str, object: &str| pb::Event {
            actor: actor.into(),
            object: object.into(),
            ..Default::default()
        };
        assert!(concerns(&e("admin", "node/node-mit"), "node-mit"));
        assert!(concerns(&e("node/node-mit", "sliver/exp-0"), "node-mit"));
        assert!(concerns(&e("reaper", "sliver/exp-0"), "node-mit"));
        assert!(!concerns(&e("alice", "slice/exp"), "node-mit"));
        assert!(!concerns(&e("admin", "node/node-eth"), "node-mit"));
    }
}
