//! `slicectl endpoints SLICE [NAME]`: the directory service. Where each sliver's named ports can
//! be reached (node address and host port), for people (a table) and scripts (`-o json`).

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use slicebed_proto::v1::{Endpoint, ResolveEndpointsRequest};

use crate::{
    ctx::Ctx,
    output::{self, view::sliver_state, Table},
};

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Slice name
    pub slice: String,
    /// Only this named port, e.g. http
    pub name: Option<String>,
}

/// The JSON shape of one endpoint.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub index: u32,
    pub sliver: String,
    pub node: String,
    pub site: String,
    pub name: String,
    pub address: String,
    pub port: u32,
    pub container_port: u32,
    /// `address:port`, ready to connect to.
    pub endpoint: String,
    pub state: String,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        EndpointView {
            index: e.index,
            sliver: e.sliver.clone(),
            node: e.node.clone(),
            site: e.site.clone(),
            name: e.name.clone(),
            address: e.address.clone(),
            port: e.port,
            container_port: e.container_port,
            endpoint: address_port(e),
            state: sliver_state(e.state()),
        }
    }
}

/// `10.0.0.5:30100`, `[fd00::5]:30100`.
fn address_port(e: &Endpoint) -> String {
    if e.address.contains(':') && !e.address.starts_with('[') {
        format!("[{}]:{}", e.address, e.port)
    } else {
        format!("{}:{}", e.address, e.port)
    }
}

pub async fn run(args: EndpointsArgs, ctx: &Ctx) -> Result<()> {
    let clients = ctx.connect().await?;
    let eps = clients
        .access
        .clone()
        .resolve_endpoints(ResolveEndpointsRequest {
            slice: args.slice.clone(),
            port: args.name.clone().unwrap_or_default(),
        })
        .await?
        .into_inner()
        .endpoints;
    if ctx.json() {
        return output::json(&eps.iter().map(EndpointView::from).collect::<Vec<_>>());
    }
    if eps.is_empty() {
        eprintln!(
            "slice {} has no endpoints (give it ports with slice create --port NAME:PORT)",
            args.slice
        );
        return Ok(());
    }
    output::out(&table(&eps).to_string())
}

fn table(eps: &[Endpoint]) -> Table {
    let mut t = Table::new(["INDEX", "NODE", "SITE", "NAME", "ENDPOINT", "STATE"]);
    for e in eps {
        t.row([
            e.index.to_string(),
            e.node.clone(),
            e.site.clone(),
            e.name.clone(),
            address_port(e),
            sliver_state(e.state()),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use slicebed_proto::v1::SliverState;

    use super::*;

    fn ep(index: u32, address: &str, state: SliverState) -> Endpoint {
        Endpoint {
            index,
            sliver: format!("web-{index}-ab12"),
            node: "node-mit".into(),
            site: "mit".into(),
            name: "http".into(),
            address: address.into(),
            port: 30100 + index,
            container_port: 8080,
            state: state as i32,
        }
    }

    #[test]
    fn table_and_json() {
        let eps = [
            ep(0, "10.0.0.5", SliverState::Running),
            ep(1, "fd00::5", SliverState::Pending),
        ];
        assert_eq!(
            table(&eps).to_string(),
            "INDEX  NODE      SITE  NAME  ENDPOINT         STATE\n\
             0      node-mit  mit   http  10.0.0.5:30100   running\n\
             1      node-mit  mit   http  [fd00::5]:30101  pending\n"
        );
        let j = serde_json::to_value(EndpointView::from(&eps[0])).unwrap();
        assert_eq!(j["endpoint"], "10.0.0.5:30100");
        assert_eq!(j["state"], "running");
        assert_eq!(j["container_port"], 8080);
    }
}
