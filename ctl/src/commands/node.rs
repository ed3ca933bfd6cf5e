//! `slicectl node token|list|show|drain|enable|delete|revoke|label`: the machines that run
//! slivers.

use anyhow::Result;
use clap::Subcommand;
use slicebed_proto::v1::{
    self as pb, CreateEnrollmentTokenRequest, DeleteNodeRequest, EnableNodeRequest, GetNodeRequest,
    LabelNodeRequest, ListNodesRequest, RevokeClusterRequest, RevokeNodeRequest,
};

use crate::{
    commands::{node_drain, user::duration},
    ctx::Ctx,
    output::{
        self,
        view::{node_state, NodeView},
        Fields, Table,
    },
    quantity::{format_cpu, format_size, parse_duration},
    timefmt::{ago, left, now_secs, rfc3339},
};

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Issue a one-time enrollment token for a new node of a site
    Token {
        /// Site the node will join
        #[arg(long)]
        site: String,
        /// How long the token stays valid
        #[arg(long, value_parser = parse_duration, default_value = "1h", value_name = "DURATION")]
        ttl: i64,
        /// Node name to put in the printed enroll command
        #[arg(long, value_name = "NODE")]
        name: Option<String>,
        /// Print the command that enrolls a Kubernetes cluster's agent (one agent for every
        /// node of the cluster) instead of a node's
        #[arg(long)]
        cluster: bool,
    },
    /// List nodes with their load
    #[command(visible_alias = "ls")]
    List {
        /// Only nodes of this site
        #[arg(long)]
        site: Option<String>,
    },
    /// Show one node
    Show {
        /// Node name
        name: String,
    },
    /// Stop placing new slivers on a node; optionally remove its slivers after a deadline
    Drain {
        /// Node name
        name: String,
        /// Remove the slivers not re-placed elsewhere after this long [default: keep them]
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        deadline: Option<i64>,
        /// Follow the node until no live sliver remains on it, showing progress
        #[arg(long)]
        wait: bool,
    },
    /// Make a drained or disabled node eligible again
    Enable {
        /// Node name
        name: String,
    },
    /// Forget a node without live slivers
    #[command(visible_alias = "rm")]
    Delete {
        /// Node name
        name: String,
    },
    /// Revoke a node's identity: its certificates stop working, its connections drop, and it
    /// must enroll again (node-manager enroll --force with a new token); its slivers stay.
    /// With --cluster, a cluster agent's identity: every member node is cut off
    Revoke {
        /// Node name (with --cluster: the cluster's name)
        name: String,
        /// NAME is a cluster enrolled with `node-manager enroll --cluster`
        #[arg(long)]
        cluster: bool,
    },
    /// Set placement labels (key=value) or remove them (key-); nodes cannot set their own
    Label {
        /// Node name
        name: String,
        /// key=value to set, key- to remove
        #[arg(required = true, value_parser = parse_label_change)]
        changes: Vec<LabelChange>,
    },
}

/// One change of `slicectl node label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    Set(String, String),
    Remove(String),
}

fn parse_label_change(s: &str) -> Result<LabelChange, String> {
    if let Some((k, v)) = s.split_once('=') {
        if k.is_empty() {
            return Err(format!("{s:?}: the key is empty"));
        }
        return Ok(LabelChange::Set(k.into(), v.into()));
    }
    match s.strip_suffix('-') {
        Some(k) if !k.is_empty() => Ok(LabelChange::Remove(k.into())),
        _ => Err(format!(
            "{s:?}: write key=value to set a label or key- to remove it"
        )),
    }
}

pub async fn run(cmd: NodeCmd, ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    let node = match cmd {
        NodeCmd::Token {
            site,
            ttl,
            name,
            cluster,
        } => {
            let req = CreateEnrollmentTokenRequest {
                site,
                ttl: Some(duration(ttl)),
            };
            let resp = c.admin.create_enrollment_token(req).await?.into_inner();
            let expires = rfc3339(resp.expires_at.as_ref()).unwrap_or_default();
            if ctx.json() {
                return output::json(&serde_json::json!({
                    "token": resp.token, "site": resp.site, "expires_at": expires,
                }));
            }
            let (what, name, flag, dir) = match cluster {
                true => (
                    "a Kubernetes cluster's agent",
                    name.unwrap_or_else(|| "<cluster-name>".into()),
                    " --cluster",
                    "cluster",
                ),
                false => (
                    "a node",
                    name.unwrap_or_else(|| "<node-name>".into()),
                    "",
                    "node",
                ),
            };
            // The node must trust the same CA as we do; the file is copied there by hand.
            let ca = match ctx.settings()?.ca_cert {
                Some(p) => format!(" --ca-cert {}", p.display()),
                None => String::new(),
            };
            return output::out(&format!(
                "One-time enrollment token for {what} of site {} (expires {expires}):\n\n  {}\n\n\
                 On the new machine, run the command below and paste the token when it waits for\n\
                 it (it reads one line from standard input, so the token stays out of `ps` and\n\
                 shell history; SLICEBED_ENROLL_TOKEN works too):\n\n  \
                 node-manager enroll --server {} --token - --name {name}{flag} --state-dir /var/lib/slicebed/{dir}{ca}\n",
                resp.site, resp.token, c.server
            ));
        }
        NodeCmd::List { site } => {
            // Every page: the service cuts answers at about 1 MiB.
            let (site, mut nodes, mut page_token) =
                (site.unwrap_or_default(), Vec::new(), String::new());
            loop {
                let req = ListNodesRequest {
                    site: site.clone(),
                    page_token,
                };
                let page = c.admin.list_nodes(req).await?.into_inner();
                nodes.extend(page.nodes);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if ctx.json() {
                return output::json(&nodes.iter().map(NodeView::from).collect::<Vec<_>>());
            }
            if nodes.is_empty() {
                return output::out(
                    "No nodes yet. Enroll one with: slicectl node token --site SITE\n",
                );
            }
            return output::out(&node_table(&nodes, now_secs()).to_string());
        }
        NodeCmd::Show { name } => c
            .admin
            .get_node(GetNodeRequest { name })
            .await?
            .into_inner(),
        NodeCmd::Drain {
            name,
            deadline,
            wait,
        } => return node_drain::run(&mut c, ctx, name, deadline, wait).await,
        NodeCmd::Enable { name } => c
            .admin
            .enable_node(EnableNodeRequest { name })
            .await?
            .into_inner(),
        NodeCmd::Delete { name } => {
            c.admin
                .delete_node(DeleteNodeRequest { name: name.clone() })
                .await?;
            if ctx.json() {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            return output::out(&format!("Deleted node {name}.\n"));
        }
        NodeCmd::Revoke {
            name,
            cluster: true,
        } => {
            let r = c
                .admin
                .revoke_cluster(RevokeClusterRequest { name: name.clone() })
                .await?
                .into_inner();
            if ctx.json() {
                return output::json(&r.members.iter().map(NodeView::from).collect::<Vec<_>>());
            }
            return output::out(&format!(
                "Revoked the identity of cluster {name}: its {} member node(s) are cut off until \
                 it enrolls again with a new token (node-manager enroll --cluster --force). \
                 Their slivers stay.\n",
                r.members.len()
            ));
        }
        NodeCmd::Revoke { name, .. } => {
            let n = c
                .admin
                .revoke_node(RevokeNodeRequest { name: name.clone() })
                .await?
                .into_inner();
            if ctx.json() {
                return output::json(&NodeView::from(&n));
            }
            return output::out(&format!(
                "Revoked the identity of node {name}: its connections are closed and it must \
                 enroll again with a new token (node-manager enroll --force). Its slivers stay.\n"
            ));
        }
        NodeCmd::Label { name, changes } => {
            let mut req = LabelNodeRequest {
                name,
                ..Default::default()
            };
            for ch in changes {
                match ch {
                    LabelChange::Set(k, v) => {
                        req.set.insert(k, v);
                    }
                    LabelChange::Remove(k) => req.remove.push(k),
                }
            }
            c.admin.label_node(req).await?.into_inner()
        }
    };
    if ctx.json() {
        return output::json(&NodeView::from(&node));
    }
    output::out(&node_fields(&node, now_secs()).to_string())
}

/// "0.5/2 cpu, 256Mi/4Gi mem": allocated over capacity.
pub fn load(allocated: Option<&pb::Resources>, capacity: Option<&pb::Resources>) -> String {
    let (a, c) = (
        allocated.cloned().unwrap_or_default(),
        capacity.cloned().unwrap_or_default(),
    );
    format!(
        "{}/{} cpu, {}/{} mem",
        format_cpu(a.cpu_millis),
        format_cpu(c.cpu_millis),
        format_size(a.memory_bytes),
        format_size(c.memory_bytes)
    )
}

/// "1 cpu, 1Gi mem, 10Gi disk".
pub fn amount(r: Option<&pb::Resources>) -> String {
    let r = r.cloned().unwrap_or_default();
    format!(
        "{} cpu, {} mem, {} disk",
        format_cpu(r.cpu_millis),
        format_size(r.memory_bytes),
        format_size(r.disk_bytes)
    )
}

fn node_table(nodes: &[pb::Node], now: i64) -> Table {
    // The column appears only while some node drains with a deadline, to keep the usual table narrow.
    let deadlines = nodes.iter().any(|n| n.drain_deadline.is_some());
    // Likewise the cluster column, while some node is a Kubernetes cluster's member.
    let clusters = nodes.iter().any(|n| !n.cluster.is_empty());
    let mut headers = vec!["NAME", "SITE", "STATE", "HEARTBEAT", "ALLOCATED", "SLIVERS"];
    if clusters {
        headers.push("CLUSTER");
    }
    if deadlines {
        headers.push("DRAIN DEADLINE");
    }
    let mut t = Table::new(headers);
    for n in nodes {
        let mut row = vec![
            n.name.clone(),
            n.site.clone(),
            node_state(n.state()),
            ago(n.last_heartbeat.as_ref(), now),
            load(n.allocated.as_ref(), n.capacity.as_ref()),
            n.slivers.to_string(),
        ];
        if clusters {
            row.push(cluster(n));
        }
        if deadlines {
            row.push(drain_deadline(n, now).unwrap_or_else(|| "-".into()));
        }
        t.row(row);
    }
    t
}

/// The cluster a member belongs to ("lab", "lab (revoked)"), "-" for a plain node.
fn cluster(n: &pb::Node) -> String {
    match (n.cluster.as_str(), n.cluster_revoked) {
        ("", _) => "-".into(),
        (c, true) => format!("{c} (revoked)"),
        (c, false) => c.to_string(),
    }
}

/// "2024-05-01T12:00:03Z (45m left)" when the node drains with a deadline.
fn drain_deadline(n: &pb::Node, now: i64) -> Option<String> {
    let at = rfc3339(n.drain_deadline.as_ref())?;
    Some(match left(n.drain_deadline.as_ref(), now).as_str() {
        "expired" => format!("{at} (passed)"),
        l => format!("{at} ({l} left)"),
    })
}

fn node_fields(n: &pb::Node, now: i64) -> Fields {
    let ports = n
        .port_range
        .map(|p| format!("{}-{}", p.first, p.last))
        .unwrap_or_default();
    let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let mut f = Fields::new();
    f.add("Name", &n.name)
        .add("Site", &n.site)
        .add("State", node_state(n.state()));
    if !n.cluster.is_empty() {
        f.add("Cluster", cluster(n));
    }
    if let Some(d) = drain_deadline(n, now) {
        f.add("Drain deadline", d);
    }
    if let Some(e) = n.engine.as_ref().filter(|e| e.unavailable) {
        f.add(
            "Engine",
            format!(
                "unavailable since {} ({}): {}",
                rfc3339(e.since.as_ref()).unwrap_or_else(|| "?".into()),
                ago(e.since.as_ref(), now),
                e.message
            ),
        );
    }
    f.add("Address", &n.address)
        .add("Heartbeat", ago(n.last_heartbeat.as_ref(), now))
        .add("Capacity", amount(n.capacity.as_ref()))
        .add("Allocated", amount(n.allocated.as_ref()))
        .add("Usage", amount(n.usage.as_ref()))
        .add("Ports", ports)
        .add("Labels", labels.join(", "))
        .add("Slivers", n.slivers.to_string())
        .add("Agent", &n.agent_version)
        .add(
            "Enrolled",
            rfc3339(n.created_at.as_ref()).unwrap_or_default(),
        );
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::prost_types::Timestamp;

    #[test]
    fn label_changes_parse_as_kubectl_writes_them() {
        assert_eq!(
            parse_label_change("zone=eu"),
            Ok(LabelChange::Set("zone".into(), "eu".into()))
        );
        assert_eq!(
            parse_label_change("gpu="),
            Ok(LabelChange::Set("gpu".into(), "".into()))
        );
        assert_eq!(
            parse_label_change("zone-"),
            Ok(LabelChange::Remove("zone".into()))
        );
        assert!(parse_label_change("zone").is_err());
        assert!(parse_label_change("=x").is_err());
        assert!(parse_label_change("-").is_err());
    }

    #[test]
    fn node_rows_show_load_and_heartbeat() {
        let n = pb::Node {
            name: "node-mit".into(),
            site: "mit".into(),
            state: pb::NodeState::Ready as i32,
            capacity: Some(pb::Resources {
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
                disk_bytes: 0,
            }),
            allocated: Some(pb::Resources {
                cpu_millis: 500,
                memory_bytes: 256 << 20,
                disk_bytes: 0,
            }),
            last_heartbeat: Some(Timestamp {
                seconds: 97,
                nanos: 0,
            }),
            slivers: 2,
            ..Default::default()
        };
        let text = node_table(&[n], 100).to_string();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains("ready"), "{row}");
        assert!(row.contains("3s ago"), "{row}");
        assert!(row.contains("0.5/2 cpu, 256Mi/4Gi mem"), "{row}");
        assert!(row.ends_with('2'), "{row}");
        assert!(!text.contains("DRAIN"), "{text}");
    }

    #[test]
    fn an_unavailable_engine_shows_with_its_cause() {
        let n = pb::Node {
            name: "node-mit".into(),
            state: pb::NodeState::EngineDown as i32,
            engine: Some(pb::EngineStatus {
                unavailable: true,
                message: "list containers: connection refused".into(),
                since: Some(Timestamp {
                    seconds: 1_714_564_803,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        };
        let text = node_table(std::slice::from_ref(&n), 1_714_564_803 + 12).to_string();
        assert!(
            text.lines().nth(1).unwrap().contains("engine_down"),
            "{text}"
        );
        let shown = node_fields(&n, 1_714_564_803 + 12).to_string();
        assert!(
            shown.contains("Engine:    unavailable since 2024-05-01T12:00:03Z (12s ago): list containers: connection refused"),
            "{shown}"
        );
        let json = serde_json::to_value(crate::output::view::NodeView::from(&n)).unwrap();
        assert_eq!(json["state"], "engine_down");
        assert_eq!(
            json["engine_unavailable"]["message"],
            "list containers: connection refused"
        );
        let fine = pb::Node::default();
        assert!(!node_fields(&fine, 0).to_string().contains("Engine"));
    }

    #[test]
    fn drain_deadlines_show_when_set() {
        let draining = pb::Node {
            name: "node-mit".into(),
            state: pb::NodeState::Draining as i32,
            drain_deadline: Some(Timestamp {
                seconds: 1_714_564_803,
                nanos: 0,
            }),
            ..Default::default()
        };
        let ready = pb::Node {
            name: "node-eth".into(),
            ..Default::default()
        };
        let now = 1_714_564_803 - 45 * 60;
        let text = node_table(&[draining.clone(), ready], now).to_string();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().ends_with("DRAIN DEADLINE"), "{text}");
        assert!(
            lines
                .next()
                .unwrap()
                .ends_with("2024-05-01T12:00:03Z (45m left)"),
            "{text}"
        );
        assert!(lines.next().unwrap().ends_with(" -"), "{text}");
        let shown = node_fields(&draining, now).to_string();
        assert!(
            shown.contains("Drain deadline: 2024-05-01T12:00:03Z (45m left)"),
            "{shown}"
        );
        assert!(drain_deadline(&draining, now + 3600)
            .unwrap()
            .ends_with("(passed)"));
        let v = serde_json::to_value(NodeView::from(&draining)).unwrap();
        assert_eq!(v["drain_deadline"], "2024-05-01T12:00:03Z");
    }
}
