//! `slicectl resources`: every site and node with what is still free, to plan a slice.

use anyhow::Result;
use serde::Serialize;
use slicebed_proto::v1::{self as pb, ListResourcesRequest};

use crate::{
    ctx::Ctx,
    output::{
        self,
        view::{node_state, ResourcesView},
        Table,
    },
    quantity::{format_cpu, format_size},
};

#[derive(Serialize)]
struct NodeFree {
    name: String,
    state: String,
    capacity: ResourcesView,
    allocated: ResourcesView,
    free: ResourcesView,
    slivers: u32,
}

#[derive(Serialize)]
struct SiteFree {
    site: String,
    enabled: bool,
    nodes: Vec<NodeFree>,
}

fn free(n: &pb::NodeResources) -> pb::Resources {
    let (c, a) = (
        n.capacity.unwrap_or_default(),
        n.allocated.unwrap_or_default(),
    );
    pb::Resources {
        cpu_millis: (c.cpu_millis - a.cpu_millis).max(0),
        memory_bytes: (c.memory_bytes - a.memory_bytes).max(0),
        disk_bytes: (c.disk_bytes - a.disk_bytes).max(0),
    }
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    let sites = c
        .slices
        .list_resources(ListResourcesRequest {})
        .await?
        .into_inner()
        .sites;
    if ctx.json() {
        let view: Vec<SiteFree> = sites
            .iter()
            .map(|s| SiteFree {
                site: s.site.clone(),
                enabled: s.enabled,
                nodes: s
                    .nodes
                    .iter()
                    .map(|n| NodeFree {
                        name: n.name.clone(),
                        state: node_state(n.state()),
                        capacity: n.capacity.as_ref().into(),
                        allocated: n.allocated.as_ref().into(),
                        free: Some(&free(n)).into(),
                        slivers: n.slivers,
                    })
                    .collect(),
            })
            .collect();
        return output::json(&view);
    }
    output::out(&resource_table(&sites).to_string())
}

fn resource_table(sites: &[pb::SiteResources]) -> Table {
    let mut t = Table::new([
        "SITE",
        "NODE",
        "STATE",
        "FREE CPU",
        "FREE MEM",
        "FREE DISK",
        "SLIVERS",
    ]);
    for s in sites {
        if s.nodes.is_empty() {
            t.row([
                s.site.as_str(),
                "-",
                if s.enabled {
                    "no nodes"
                } else {
                    "site disabled"
                },
            ]);
        }
        for n in &s.nodes {
            let f = free(n);
            let state = if s.enabled {
                node_state(n.state())
            } else {
                "site disabled".into()
            };
            t.row([
                s.site.clone(),
                n.name.clone(),
                state,
                format_cpu(f.cpu_millis),
                format_size(f.memory_bytes),
                format_size(f.disk_bytes),
                n.slivers.to_string(),
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_is_capacity_minus_allocation() {
        let n = pb::NodeResources {
            name: "node-eth".into(),
            state: pb::NodeState::Ready as i32,
            capacity: Some(pb::Resources {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
            }),
            allocated: Some(pb::Resources {
                cpu_millis: 100,
                memory_bytes: 64 << 20,
                disk_bytes: 0,
            }),
            slivers: 1,
            labels: Default::default(),
        };
        let site = pb::SiteResources {
            site: "eth".into(),
            enabled: true,
            nodes: vec![n],
        };
        let text = resource_table(&[site]).to_string();
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["eth", "node-eth", "ready", "0.9", "960Mi", "10Gi", "1"]
        );
    }
}
