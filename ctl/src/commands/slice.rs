//! `slicectl slice create|list|show|wait|renew|delete|events`: what researchers use every day.

use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use slicebed_proto::v1::{
    self as pb, CreateSliceRequest, DeleteSliceRequest, GetSliceRequest, ListSlicesRequest,
    RenewSliceRequest,
};

use crate::{
    client::Clients,
    commands::{events, parse_key_value, slice_show, user::duration},
    ctx::Ctx,
    output::{
        self,
        view::{slice_state, SliceView},
        Table,
    },
    quantity::{parse_cpu, parse_duration, parse_size},
    timefmt::{left, now_secs, rfc3339},
    wait,
};

#[derive(Debug, Subcommand)]
pub enum SliceCmd {
    /// Create a slice: the same container on many nodes
    Create(Box<CreateArgs>),
    /// List your slices with the time left on their leases
    #[command(visible_alias = "ls")]
    List {
        /// Include deleted and expired slices
        #[arg(long)]
        all: bool,
        /// Only slices of this site (admins and PIs)
        #[arg(long)]
        site: Option<String>,
    },
    /// Show a slice and its slivers
    Show {
        /// Slice name
        name: String,
    },
    /// Wait until every sliver of a slice runs
    Wait {
        /// Slice name
        name: String,
        /// Give up after this long
        #[arg(long, value_parser = parse_duration, default_value = "2m", value_name = "DURATION")]
        timeout: i64,
    },
    /// Extend a slice's lease, counted from now
    Renew {
        /// Slice name
        name: String,
        /// New lease length, e.g. 14d
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        lease: i64,
    },
    /// Delete a slice; its nodes remove its slivers
    #[command(visible_alias = "rm")]
    Delete {
        /// Slice name
        name: String,
    },
    /// Print a slice's recent events, then new ones as they happen (Ctrl-C to stop)
    Watch {
        /// Slice name
        name: String,
        /// How many past events to show first
        #[arg(long, default_value_t = 10)]
        last: u32,
    },
    /// Show the events of a slice and its slivers
    Events {
        /// Slice name
        name: String,
        /// Keep printing new events
        #[arg(short, long)]
        follow: bool,
    },
}

/// What nodes do when a sliver's program exits (`--restart never|on-failure|always`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

impl From<Restart> for pb::RestartPolicy {
    fn from(r: Restart) -> Self {
        match r {
            Restart::Never => pb::RestartPolicy::Never,
            Restart::OnFailure => pb::RestartPolicy::OnFailure,
            Restart::Always => pb::RestartPolicy::Always,
        }
    }
}

/// What happens to slivers whose node is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeLoss {
    /// Wait for the node to come back
    Keep,
    /// Re-place them on another node after a grace period
    Replace,
}

impl From<NodeLoss> for pb::NodeLossPolicy {
    fn from(p: NodeLoss) -> Self {
        match p {
            NodeLoss::Keep => pb::NodeLossPolicy::Keep,
            NodeLoss::Replace => pb::NodeLossPolicy::Replace,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("count").required(true).args(["slivers", "per_site"])))]
pub struct CreateArgs {
    /// Slice name, a DNS label
    pub name: String,
    /// Container image every sliver runs, e.g. slicebed/base:latest
    #[arg(long)]
    pub image: String,
    /// Total number of slivers
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub slivers: Option<u32>,
    /// Number of slivers on each eligible site
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub per_site: Option<u32>,
    /// Only these sites (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "SITE,...")]
    pub sites: Vec<String>,
    /// Distinct sites first, then the least loaded nodes (default)
    #[arg(long, conflicts_with = "pack")]
    pub spread: bool,
    /// Fill the busiest nodes that still fit
    #[arg(long)]
    pub pack: bool,
    /// Only nodes with this label (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// CPU per sliver: cores (0.5, 2) or millicores (500m)
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<i64>,
    /// Memory per sliver, e.g. 256Mi
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub memory: Option<i64>,
    /// Disk per sliver, e.g. 1Gi
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub disk: Option<i64>,
    /// Lease length, e.g. 7d [default: the service's]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub lease: Option<i64>,
    /// Port to expose on every sliver, NAME:PORT (repeatable)
    #[arg(long = "port", value_name = "NAME:PORT", value_parser = parse_port)]
    pub ports: Vec<(String, u32)>,
    /// Environment variable (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Another user who may act on the slice (repeatable)
    #[arg(long = "member", value_name = "USER")]
    pub members: Vec<String>,
    /// What nodes do when the program exits [default: on-failure]
    #[arg(long, value_enum)]
    pub restart: Option<Restart>,
    /// When a sliver's node stops answering: wait for it, or re-place the sliver elsewhere
    /// [default: keep]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_node_loss: Option<NodeLoss>,
    /// How long a node may be unreachable before its slivers are re-placed; implies
    /// --on-node-loss replace [default: the service's, 5m]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub replace_after: Option<i64>,
    /// Accept fewer slivers than asked instead of failing
    #[arg(long)]
    pub best_effort: bool,
    /// Free text
    #[arg(long)]
    pub description: Option<String>,
    /// Wait until every sliver runs, showing progress
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this long
    #[arg(long, value_parser = parse_duration, default_value = "2m", value_name = "DURATION")]
    pub timeout: i64,
    /// Command to run instead of the image's default (after --)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Parses `NAME:PORT` like `http:8080`.
pub fn parse_port(s: &str) -> Result<(String, u32), String> {
    const HINT: &str = "expected NAME:PORT like http:8080";
    let (name, port) = s.split_once(':').ok_or(HINT)?;
    let port: u32 = port.trim().parse().map_err(|_| HINT)?;
    if name.trim().is_empty() || !(1..=65535).contains(&port) {
        return Err(format!("{HINT} (port between 1 and 65535)"));
    }
    Ok((name.trim().to_string(), port))
}

impl CreateArgs {
    /// Combinations clap cannot express.
    pub fn check(&self) -> Result<()> {
        if self.on_node_loss == Some(NodeLoss::Keep) && self.replace_after.is_some() {
            anyhow::bail!("--replace-after only applies with --on-node-loss replace");
        }
        Ok(())
    }

    /// The CreateSlice request these flags describe.
    pub fn request(&self) -> CreateSliceRequest {
        let strategy = if self.pack {
            pb::PlacementStrategy::Pack
        } else {
            pb::PlacementStrategy::Spread
        };
        // Unset flags stay UNSPECIFIED: the service applies the contract's defaults.
        let restart = self
            .restart
            .map_or(pb::RestartPolicy::Unspecified, Into::into);
        let node_loss = match (self.on_node_loss, self.replace_after) {
            (Some(p), _) => p.into(),
            // --replace-after implies --on-node-loss replace.
            (None, Some(_)) => pb::NodeLossPolicy::Replace,
            (None, None) => pb::NodeLossPolicy::Unspecified,
        };
        CreateSliceRequest {
            name: self.name.clone(),
            description: self.description.clone().unwrap_or_default(),
            image: self.image.clone(),
            command: self.command.clone(),
            env: self.env.iter().cloned().collect(),
            resources: Some(pb::Resources {
                cpu_millis: self.cpu.unwrap_or(0),
                memory_bytes: self.memory.unwrap_or(0),
                disk_bytes: self.disk.unwrap_or(0),
            }),
            ports: self
                .ports
                .iter()
                .map(|(name, port)| pb::NamedPort {
                    name: name.clone(),
                    container_port: *port,
                })
                .collect(),
            placement: Some(pb::PlacementRequest {
                strategy: strategy as i32,
                slivers: self.slivers.unwrap_or(0),
                per_site: self.per_site.unwrap_or(0),
                sites: self
                    .sites
                    .iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                node_labels: self.labels.iter().cloned().collect(),
                best_effort: self.best_effort,
            }),
            lease: self.lease.map(duration),
            members: self.members.clone(),
            restart_policy: restart as i32,
            node_loss: node_loss as i32,
            replace_after: self.replace_after.map(duration),
        }
    }
}

/// Creates a slice, optionally waits for it, and prints it. Used by `dev up` too.
pub async fn create(c: &mut Clients, ctx: &Ctx, args: &CreateArgs) -> Result<pb::Slice> {
    args.check()?;
    let resp = c.slices.create_slice(args.request()).await?.into_inner();
    for w in &resp.warnings {
        eprintln!("warning: {w}");
    }
    let slice = resp.slice.unwrap_or_default();
    if args.wait {
        let timeout = Duration::from_secs(args.timeout as u64);
        let ready = wait::until_ready(c, &slice.name, timeout, ctx.json()).await?;
        slice_show::print(ctx, &ready)?;
        return Ok(ready);
    }
    if ctx.json() {
        output::json(&SliceView::from(&slice))?;
        return Ok(slice);
    }
    let mut sites: Vec<&str> = slice.slivers.iter().map(|v| v.site.as_str()).collect();
    sites.sort();
    sites.dedup();
    output::out(&format!(
        "Created slice {} with {} slivers on {} sites ({}).\nWatch it come up with: slicectl slice wait {}\n",
        slice.name,
        slice.slivers.len(),
        sites.len(),
        sites.join(", "),
        slice.name
    ))?;
    Ok(slice)
}

/// Every slice the caller may see, page after page (the service cuts answers at about 1 MiB).
pub async fn list_all(
    c: &mut Clients,
    include_deleted: bool,
    site: String,
) -> Result<Vec<pb::Slice>> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = ListSlicesRequest {
            include_deleted,
            site: site.clone(),
            page_token,
        };
        let page = c.slices.list_slices(req).await?.into_inner();
        out.extend(page.slices);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}

pub async fn run(cmd: SliceCmd, ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    match cmd {
        SliceCmd::Create(args) => create(&mut c, ctx, &args).await.map(drop),
        SliceCmd::List { all, site } => {
            let slices = list_all(&mut c, all, site.unwrap_or_default()).await?;
            if ctx.json() {
                return output::json(&slices.iter().map(SliceView::from).collect::<Vec<_>>());
            }
            if slices.is_empty() {
                return output::out("No slices. Create one with: slicectl slice create NAME --image IMAGE --slivers N\n");
            }
            output::out(&slice_table(&slices, now_secs()).to_string())
        }
        SliceCmd::Show { name } => slice_show::show(ctx, &mut c, name).await,
        SliceCmd::Wait { name, timeout } => {
            let slice = wait::until_ready(
                &mut c,
                &name,
                Duration::from_secs(timeout as u64),
                ctx.json(),
            )
            .await?;
            slice_show::print(ctx, &slice)
        }
        SliceCmd::Renew { name, lease } => {
            let req = RenewSliceRequest {
                name,
                duration: Some(duration(lease)),
            };
            let resp = c.slices.renew_slice(req).await?.into_inner();
            let slice = resp.slice.unwrap_or_default();
            if ctx.json() {
                return output::json(
                    &serde_json::json!({ "slice": SliceView::from(&slice), "note": resp.note }),
                );
            }
            let until = rfc3339(slice.lease_expires_at.as_ref()).unwrap_or_default();
            let mut text = format!(
                "Renewed slice {}: {} left (until {until}).\n",
                slice.name,
                left(slice.lease_expires_at.as_ref(), now_secs())
            );
            if !resp.note.is_empty() {
                text.push_str(&format!("Note: {}\n", resp.note));
            }
            output::out(&text)
        }
        SliceCmd::Delete { name } => {
            c.slices
                .delete_slice(DeleteSliceRequest { name: name.clone() })
                .await?;
            if ctx.json() {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            output::out(&format!(
                "Deleted slice {name}; its nodes are removing its slivers.\n"
            ))
        }
        SliceCmd::Watch { name, last } => {
            // A typo should say "not found" rather than wait forever on an empty stream.
            c.slices
                .get_slice(GetSliceRequest { name: name.clone() })
                .await?;
            events::show(&c, ctx, format!("slice/{name}"), last.max(1), true).await
        }
        SliceCmd::Events { name, follow } => {
            events::show(&c, ctx, format!("slice/{name}"), 100, follow).await
        }
    }
}

fn slice_table(slices: &[pb::Slice], now: i64) -> Table {
    let mut t = Table::new(["NAME", "OWNER", "STATE", "SLIVERS", "IMAGE", "LEASE LEFT"]);
    for s in slices {
        t.row([
            s.name.clone(),
            s.owner.clone(),
            slice_state(s.state()),
            slice_show::sliver_summary(&s.slivers),
            s.image.clone(),
            left(s.lease_expires_at.as_ref(), now),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    fn parse(args: &[&str]) -> Result<CreateArgs, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|t| t.a)
    }

    #[test]
    fn create_flags_become_a_request() {
        let a = parse(&[
            "demo",
            "--image",
            "img",
            "--per-site",
            "1",
            "--sites",
            "mit,eth",
            "--pack",
            "--cpu",
            "0.1",
            "--memory",
            "64Mi",
            "--lease",
            "7d",
            "--port",
            "http:8080",
            "--env",
            "A=b=c",
            "--label",
            "gpu=yes",
            "--restart",
            "never",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let r = a.request();
        let p = r.placement.unwrap();
        assert_eq!(
            (p.per_site, p.slivers, p.strategy),
            (1, 0, pb::PlacementStrategy::Pack as i32)
        );
        assert_eq!(p.sites, ["mit", "eth"]);
        assert_eq!(p.node_labels["gpu"], "yes");
        assert_eq!(r.resources.unwrap().cpu_millis, 100);
        assert_eq!(r.resources.unwrap().memory_bytes, 64 << 20);
        assert_eq!(r.lease.unwrap().seconds, 7 * 86_400);
        assert_eq!(r.env["A"], "b=c");
        assert_eq!(r.ports[0].container_port, 8080);
        assert_eq!(r.restart_policy, pb::RestartPolicy::Never as i32);
        for (flag, policy) in [
            ("on-failure", pb::RestartPolicy::OnFailure),
            ("always", pb::RestartPolicy::Always),
        ] {
            let other = parse(&["demo", "--image", "i", "--slivers", "1", "--restart", flag])
                .unwrap()
                .request();
            assert_eq!(other.restart_policy, policy as i32, "--restart {flag}");
        }
        let unset = parse(&["demo", "--image", "i", "--slivers", "1"])
            .unwrap()
            .request();
        assert_eq!(unset.restart_policy, pb::RestartPolicy::Unspecified as i32);
        assert_eq!(
            unset.placement.unwrap().strategy,
            pb::PlacementStrategy::Spread as i32
        );
        assert!(parse(&["demo", "--image", "i", "--slivers", "1", "--restart", "no"]).is_err());
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert_eq!(r.node_loss, pb::NodeLossPolicy::Unspecified as i32);
        assert_eq!(r.replace_after, None);
    }

    #[test]
    fn node_loss_flags() {
        let base = ["demo", "--image", "i", "--slivers", "2"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let r = with(&["--on-node-loss", "replace", "--replace-after", "10m"])
            .unwrap()
            .request();
        assert_eq!(r.node_loss, pb::NodeLossPolicy::Replace as i32);
        assert_eq!(r.replace_after.unwrap().seconds, 600);
        let r = with(&["--replace-after", "90s"]).unwrap().request();
        assert_eq!(r.node_loss, pb::NodeLossPolicy::Replace as i32, "implied");
        let r = with(&["--on-node-loss", "keep"]).unwrap().request();
        assert_eq!(r.node_loss, pb::NodeLossPolicy::Keep as i32);
        assert_eq!(r.replace_after, None);
        let a = with(&["--on-node-loss", "keep", "--replace-after", "1m"]).unwrap();
        assert!(a
            .check()
            .unwrap_err()
            .to_string()
            .contains("--replace-after"));
        assert!(with(&["--on-node-loss", "move"]).is_err());
        assert!(with(&["--replace-after", "soon"]).is_err());
    }

    #[test]
    fn create_flags_are_checked() {
        assert!(
            parse(&["demo", "--image", "i"]).is_err(),
            "a count is required"
        );
        assert!(parse(&["demo", "--image", "i", "--slivers", "2", "--per-site", "1"]).is_err());
        assert!(parse(&["demo", "--image", "i", "--slivers", "0"]).is_err());
        assert!(parse(&[
            "demo",
            "--image",
            "i",
            "--slivers",
            "1",
            "--spread",
            "--pack"
        ])
        .is_err());
        let err = parse(&["demo", "--image", "i", "--slivers", "1", "--cpu", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cpu") && err.contains("'0'"), "{err}");
        let err = parse(&["demo", "--image", "i", "--slivers", "1", "--memory", "lots"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--memory") && err.contains("lots"), "{err}");
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_port("http:8080"), Ok(("http".into(), 8080)));
        assert!(parse_port("8080").is_err());
        assert!(parse_port("http:0").is_err());
        assert!(parse_port("http:70000").is_err());
    }
}
