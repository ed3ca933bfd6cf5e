//! Helpers shared by the control-plane test files.
#![allow(dead_code)]

pub mod testbed;

use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_tests::{wait_for, Clients};

pub const GI: i64 = 1 << 30;
pub const MI: i64 = 1 << 20;

pub fn site(name: &str) -> pb::CreateSiteRequest {
    pb::CreateSiteRequest {
        site: Some(pb::Site {
            name: name.into(),
            display_name: format!("Site {name}"),
            enabled: true,
            ..Default::default()
        }),
    }
}

pub async fn make_site(a: &Clients, name: &str) {
    a.admin
        .clone()
        .create_site(site(name))
        .await
        .expect("create site");
}

pub async fn make_user(a: &Clients, name: &str, site: &str) -> String {
    make_user_as(a, name, pb::Role::User, site).await
}

pub async fn make_user_as(a: &Clients, name: &str, role: pb::Role, site: &str) -> String {
    a.admin
        .clone()
        .create_user(pb::CreateUserRequest {
            name: name.into(),
            role: role as i32,
            site: site.into(),
            token_ttl: None,
        })
        .await
        .expect("create user")
        .into_inner()
        .token
}

pub fn slice_req(name: &str, slivers: u32, memory: i64) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        resources: Some(pb::Resources {
            cpu_millis: 100,
            memory_bytes: memory,
            disk_bytes: GI,
        }),
        placement: Some(pb::PlacementRequest {
            slivers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn wait_ready(a: &Clients, n: usize) {
    wait_for("nodes ready", Duration::from_secs(10), || {
        let mut admin = a.admin.clone();
        async move {
            let nodes = admin
                .list_nodes(pb::ListNodesRequest::default())
                .await
                .ok()?
                .into_inner()
                .nodes;
            (nodes
                .iter()
                .filter(|x| x.state == pb::NodeState::Ready as i32)
                .count()
                >= n)
                .then_some(())
        }
    })
    .await
}

pub async fn nodes(a: &Clients) -> Vec<pb::Node> {
    a.admin
        .clone()
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes
}

/// One node by name.
pub async fn node(a: &Clients, name: &str) -> pb::Node {
    a.admin
        .clone()
        .get_node(pb::GetNodeRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

/// The events about `object` ("slice/web", "node/n1"), oldest first.
pub async fn events(a: &Clients, object: &str) -> Vec<pb::Event> {
    a.slices
        .clone()
        .list_events(pb::ListEventsRequest {
            object: object.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}
