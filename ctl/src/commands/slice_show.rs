//! How a slice looks to people: its fields, then one row per sliver. Shared by `slice show`,
//! `slice create --wait` and `dev up`, so they always agree. `slice show` adds what each
//! sliver uses against its limits (`slicectl top SLICE` shows the same, and keeps at it).

use anyhow::Result;
use serde::Serialize;
use slicebed_proto::v1 as pb;

use crate::{
    client::Clients,
    commands::node::amount,
    commands::top::{sliver_usage_table, SliceTop},
    ctx::Ctx,
    output::{
        self, enum_name,
        view::{node_loss, slice_state, sliver_state, SliceView},
        Fields, Table,
    },
    quantity::format_duration,
    timefmt::{left, now_secs, rfc3339},
};

/// Prints a slice as `slice show` does (or its JSON view).
pub fn print(ctx: &Ctx, slice: &pb::Slice) -> Result<()> {
    if ctx.json() {
        return output::json(&SliceView::from(slice));
    }
    output::out(&render(slice, now_secs()))
}

/// `slice show -o json`: the slice, and under `usage` what its slivers use (null when the
/// service does not measure usage).
#[derive(Serialize)]
struct ShownSlice {
    #[serde(flatten)]
    slice: SliceView,
    usage: Option<SliceTop>,
}

/// `slice show NAME`: the slice, then its slivers' current usage against their limits.
pub async fn show(ctx: &Ctx, c: &mut Clients, name: String) -> Result<()> {
    let slice = c
        .slices
        .get_slice(pb::GetSliceRequest { name: name.clone() })
        .await?
        .into_inner();
    // Usage is an extra: a service without it (older, or the slice just ended) still shows
    // the slice.
    let usage = match c
        .slices
        .get_slice_usage(pb::GetSliceUsageRequest {
            name,
            history: None,
        })
        .await
    {
        Ok(u) => Some(u.into_inner()),
        Err(s) if matches!(s.code(), tonic::Code::Unimplemented | tonic::Code::NotFound) => None,
        Err(s) => return Err(s.into()),
    };
    if ctx.json() {
        return output::json(&ShownSlice {
            slice: SliceView::from(&slice),
            usage: usage.as_ref().map(SliceTop::from),
        });
    }
    let mut text = render(&slice, now_secs());
    if let Some(u) = usage.filter(|u| !u.sliver_usage.is_empty()) {
        text.push_str(
            "
Usage (measured by the nodes; - where nothing was measured lately):
",
        );
        text.push_str(&sliver_usage_table(&u.sliver_usage).to_string());
    }
    output::out(&text)
}

/// The whole `slice show` text.
pub fn render(s: &pb::Slice, now: i64) -> String {
    let mut text = fields(s, now).to_string();
    if !s.slivers.is_empty() {
        text.push('\n');
        text.push_str(&sliver_table(&s.slivers).to_string());
    }
    text
}

/// "3/3 running", "1/3 running, 1 exited, 1 failed".
pub fn sliver_summary(slivers: &[pb::Sliver]) -> String {
    let count = |state: pb::SliverState| slivers.iter().filter(|v| v.state() == state).count();
    let mut s = format!(
        "{}/{} running",
        count(pb::SliverState::Running),
        slivers.len()
    );
    for (state, word) in [
        (pb::SliverState::Exited, "exited"),
        (pb::SliverState::Failed, "failed"),
    ] {
        if count(state) > 0 {
            s.push_str(&format!(", {} {word}", count(state)));
        }
    }
    s
}

/// "http 8080→30001, ssh 22→30002".
pub fn assigned_ports(ports: &[pb::AssignedPort]) -> String {
    ports
        .iter()
        .map(|p| format!("{} {}→{}", p.name, p.container_port, p.host_port))
        .collect::<Vec<_>>()
        .join(", ")
}

fn placement(p: Option<&pb::PlacementRequest>) -> String {
    let Some(p) = p else { return String::new() };
    let mut s = enum_name(p.strategy().as_str_name(), "PLACEMENT_STRATEGY_");
    if s == "unspecified" {
        s = "spread".into();
    }
    if p.per_site > 0 {
        s.push_str(&format!(", {} per site", p.per_site));
    } else {
        let plural = if p.slivers == 1 { "" } else { "s" };
        s.push_str(&format!(", {} sliver{plural}", p.slivers));
    }
    if !p.sites.is_empty() {
        s.push_str(&format!(" on {}", p.sites.join(",")));
    }
    let mut labels: Vec<String> = p
        .node_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    if !labels.is_empty() {
        s.push_str(&format!(", nodes with {}", labels.join(",")));
    }
    if p.best_effort {
        s.push_str(", best effort");
    }
    s
}

fn fields(s: &pb::Slice, now: i64) -> Fields {
    let lease = match rfc3339(s.lease_expires_at.as_ref()) {
        Some(at) => format!(
            "{} left (until {at})",
            left(s.lease_expires_at.as_ref(), now)
        ),
        None => String::new(),
    };
    let mut env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| format!("{}:{}", p.name, p.container_port))
        .collect();
    let mut f = Fields::new();
    f.add("Name", &s.name).add("State", slice_state(s.state()));
    f.add("Slivers", sliver_summary(&s.slivers));
    f.add("Owner", &s.owner);
    if !s.site.is_empty() {
        f.add("Site", &s.site);
    }
    if !s.members.is_empty() {
        f.add("Members", s.members.join(", "));
    }
    if !s.description.is_empty() {
        f.add("Description", &s.description);
    }
    f.add("Image", &s.image);
    if !s.image_digest.is_empty() {
        f.add("Digest", &s.image_digest);
    }
    if !s.command.is_empty() {
        f.add("Command", shell_words(&s.command));
    }
    if !env.is_empty() {
        f.add("Env", env.join(" "));
    }
    f.add(
        "Resources",
        format!("{} each", amount(s.resources.as_ref())),
    );
    if !ports.is_empty() {
        f.add("Ports", ports.join(", "));
    }
    f.add("Placement", placement(s.placement.as_ref()));
    f.add(
        "Restart",
        enum_name(s.restart_policy().as_str_name(), "RESTART_POLICY_").replace('_', "-"),
    );
    f.add("Node loss", node_loss_policy(s));
    f.add(
        "Created",
        rfc3339(s.created_at.as_ref()).unwrap_or_default(),
    );
    f.add("Lease", lease);
    f
}

/// "keep", "replace after 10m", or "replace after 5m (default)" when the slice leaves the grace
/// period to the service (whose default the contract fixes at 5 minutes).
fn node_loss_policy(s: &pb::Slice) -> String {
    let policy = node_loss(s.node_loss());
    if policy != "replace" {
        return policy;
    }
    match s.replace_after {
        Some(d) if d.seconds > 0 => format!("replace after {}", format_duration(d.seconds)),
        _ => "replace after 5m (default)".into(),
    }
}

/// Quotes arguments that need it, so the command reads like what was typed.
fn shell_words(args: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

fn sliver_table(slivers: &[pb::Sliver]) -> Table {
    let with_address = slivers.iter().any(|v| !v.node_address.is_empty());
    let mut headers = vec!["INDEX", "NODE", "SITE", "STATE", "PORTS"];
    if with_address {
        headers.push("ADDRESS");
    }
    headers.push("LAST ERROR");
    let mut t = Table::new(headers);
    for v in slivers {
        let mut state = sliver_state(v.state());
        if let Some(code) = v
            .exit_code
            .filter(|_| v.state() != pb::SliverState::Running)
        {
            state.push_str(&format!(" ({code})"));
        }
        let mut row = vec![
            v.index.to_string(),
            v.node.clone(),
            v.site.clone(),
            state,
            assigned_ports(&v.ports),
        ];
        if with_address {
            row.push(v.node_address.clone());
        }
        row.push(v.last_error.clone());
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliver(index: u32, state: pb::SliverState, err: &str) -> pb::Sliver {
        pb::Sliver {
            index,
            node: format!("node-{index}"),
            site: "mit".into(),
            state: state as i32,
            last_error: err.into(),
            ports: vec![pb::AssignedPort {
                name: "http".into(),
                container_port: 8080,
                host_port: 30001 + index,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn renders_fields_and_slivers() {
        let s = pb::Slice {
            name: "demo".into(),
            image: "slicebed/base:latest".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi > /tmp/x".into()],
            state: pb::SliceState::Degraded as i32,
            lease_expires_at: Some(slicebed_proto::prost_types::Timestamp {
                seconds: 7 * 86_400 - 60,
                nanos: 0,
            }),
            placement: Some(pb::PlacementRequest {
                per_site: 1,
                ..Default::default()
            }),
            slivers: vec![
                sliver(0, pb::SliverState::Running, ""),
                sliver(1, pb::SliverState::Failed, "image not found"),
            ],
            ..Default::default()
        };
        let text = render(&s, 0);
        assert!(text.contains("State:     degraded"), "{text}");
        assert!(text.contains("Slivers:   1/2 running, 1 failed"), "{text}");
        assert!(
            text.contains("Command:   sh -c 'echo hi > /tmp/x'"),
            "{text}"
        );
        assert!(text.contains("Placement: spread, 1 per site"), "{text}");
        assert!(text.contains("Lease:     6d23h left"), "{text}");
        assert!(text.contains("Node loss: keep\n"), "{text}");
        assert!(
            text.contains("INDEX  NODE    SITE  STATE    PORTS            LAST ERROR"),
            "{text}"
        );
        assert!(
            text.contains("1      node-1  mit   failed   http 8080→30002  image not found"),
            "{text}"
        );
    }

    #[test]
    fn node_loss_policy_reads_well() {
        let mut s = pb::Slice {
            node_loss: pb::NodeLossPolicy::Replace as i32,
            ..Default::default()
        };
        assert_eq!(node_loss_policy(&s), "replace after 5m (default)");
        s.replace_after = Some(slicebed_proto::prost_types::Duration {
            seconds: 5400,
            nanos: 0,
        });
        assert_eq!(node_loss_policy(&s), "replace after 1h30m");
        s.node_loss = pb::NodeLossPolicy::Keep as i32;
        assert_eq!(node_loss_policy(&s), "keep");
    }
}
