//! A testbed of real node managers on the local Docker engine, and ways to look at it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use bollard::Docker;
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

use super::*;

pub fn docker() -> Docker {
    Docker::connect_with_local_defaults().expect("docker engine")
}

/// Containers (id, name) of a node, running or not.
pub async fn containers(node: &str) -> Vec<(String, String)> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("slicebed.node={node}")]);
    let list = docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    list.into_iter()
        .map(|c| {
            (
                c.id.unwrap_or_default(),
                c.names.unwrap_or_default().join(","),
            )
        })
        .collect()
}

pub async fn networks_of(node: &str) -> Vec<String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("slicebed.node={node}")]);
    docker()
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .expect("list networks")
        .into_iter()
        .filter_map(|n| n.name)
        .collect()
}

pub async fn slice(a: &Clients, name: &str) -> Option<pb::Slice> {
    a.slices
        .clone()
        .get_slice(pb::GetSliceRequest { name: name.into() })
        .await
        .ok()
        .map(|r| r.into_inner())
}

pub async fn wait_running(a: &Clients, name: &str) -> pb::Slice {
    wait_for(
        &format!("slice {name} running"),
        Duration::from_secs(60),
        || async {
            let s = slice(a, name).await?;
            if let Some(v) = s
                .slivers
                .iter()
                .find(|v| v.state == pb::SliverState::Failed as i32)
            {
                panic!("sliver {} failed: {}", v.id, v.last_error);
            }
            s.slivers
                .iter()
                .all(|v| v.state == pb::SliverState::Running as i32)
                .then_some(s)
        },
    )
    .await
}

pub struct Testbed {
    pub svc: Service,
    pub admin: Clients,
    pub nodes: Vec<NodeManager>,
}

pub async fn testbed(sites: &[&str]) -> Testbed {
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    let mut nodes = Vec::new();
    for s in sites {
        make_site(&admin, s).await;
        nodes.push(NodeManager::start(&svc, s, &unique(s)).await);
    }
    wait_ready(&admin, sites.len()).await;
    Testbed { svc, admin, nodes }
}

pub fn web_slice(name: &str, per_site: u32) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from $HOSTNAME > /tmp/index.html; exec httpd -f -p 8080 -h /tmp".into(),
        ],
        resources: Some(pb::Resources {
            cpu_millis: 200,
            memory_bytes: 64 * MI,
            disk_bytes: GI,
        }),
        ports: vec![pb::NamedPort {
            name: "http".into(),
            container_port: 8080,
        }],
        placement: Some(pb::PlacementRequest {
            per_site,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn http_get(port: u32) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
