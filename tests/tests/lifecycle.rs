//! Leases, restarts, TLS and the control channel's desired-state protocol.

mod common;

use std::time::Duration;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::service_message::Msg;
use slicebed_tests::{wait_for, Clients, Service, TestNode};

#[tokio::test]
async fn state_survives_a_service_restart_and_nodes_reconnect() {
    let mut svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = make_user(&a, "alice", "mit").await;
    let node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let alice = Clients::new(&svc, Some(&tok)).await;
    let sl = alice
        .slices
        .clone()
        .create_slice(slice_req("keep", 2, 256 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    for v in &sl.slivers {
        node.report(&v.id, pb::SliverState::Running, "").await;
    }
    wait_for("running", Duration::from_secs(5), || {
        let mut s = alice.slices.clone();
        async move {
            let sl = s
                .get_slice(pb::GetSliceRequest {
                    name: "keep".into(),
                })
                .await
                .ok()?
                .into_inner();
            (sl.state == pb::SliceState::Ready as i32).then_some(())
        }
    })
    .await;
    let cred = node.credential.clone();
    node.disconnect();

    assert!(svc.terminate(), "SIGTERM gives a clean exit");
    svc.restart().await;
    let a = Clients::admin(&svc).await;
    let alice = Clients::new(&svc, Some(&tok)).await;
    let after = alice
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "keep".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.slivers.len(), 2);
    assert_eq!(after.lease_expires_at, sl.lease_expires_at);
    // Until the node reconnects nobody knows whether its slivers still run.
    let n = nodes(&a).await;
    assert_eq!(n[0].state, pb::NodeState::Unreachable as i32);
    assert!(
        after
            .slivers
            .iter()
            .all(|v| v.state == pb::SliverState::Unknown as i32),
        "{:?}",
        after.slivers
    );

    // The node reconnects with its stored credential and gets its full desired set.
    let mut node = TestNode::connect(&svc, "n1", &cred, 2000, 2 * GI)
        .await
        .unwrap();
    let mut desired = None;
    while let Some(m) = node.recv(Duration::from_secs(5)).await {
        if let Some(Msg::Desired(d)) = m.msg {
            desired = Some(d);
            break;
        }
    }
    let ids: Vec<String> = desired
        .expect("desired set")
        .slivers
        .into_iter()
        .map(|d| d.sliver_id)
        .collect();
    assert_eq!(ids.len(), 2);
    wait_ready(&a, 1).await;
    let back = alice
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "keep".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(back
        .slivers
        .iter()
        .all(|v| v.state == pb::SliverState::Running as i32));
}

#[tokio::test]
async fn nodes_get_changes_pushed_and_removals_confirmed() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let mut req = slice_req("push", 1, 128 * MI);
    req.ports = vec![pb::NamedPort {
        name: "http".into(),
        container_port: 8080,
    }];
    req.env.insert("MODE".into(), "test".into());
    a.slices.clone().create_slice(req).await.unwrap();
    let upsert = loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("a message")
            .msg
        {
            Some(Msg::Upsert(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(upsert.slice, "push");
    assert_eq!(upsert.env.get("MODE").map(String::as_str), Some("test"));
    assert_eq!(upsert.ports[0].container_port, 8080);
    assert!((30000..=30999).contains(&upsert.ports[0].host_port));
    assert_eq!(upsert.resources.unwrap().memory_bytes, 128 * MI);

    a.slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "push".into(),
        })
        .await
        .unwrap();
    let removed = node.next_remove(Duration::from_secs(5)).await;
    assert_eq!(removed, upsert.sliver_id);
    node.report(&removed, pb::SliverState::Deleted, "").await;
    wait_for("capacity freed", Duration::from_secs(5), || {
        let a = a.clone();
        async move { (nodes(&a).await[0].slivers == 0).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_slice_deleted_while_its_node_is_away_is_settled_on_reconnect() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    a.slices
        .clone()
        .create_slice(slice_req("gone", 1, 128 * MI))
        .await
        .unwrap();
    let cred = node.credential.clone();
    node.disconnect();
    a.slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "gone".into(),
        })
        .await
        .unwrap();
    // Reconnecting with nothing observed: the desired set is empty and the removal completes.
    let mut node = TestNode::connect(&svc, "n1", &cred, 2000, 2 * GI)
        .await
        .unwrap();
    let set = loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("a message")
            .msg
        {
            Some(Msg::Desired(d)) => break d,
            _ => continue,
        }
    };
    assert!(set.slivers.is_empty());
    let sl = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "gone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sl.slivers[0].state, pb::SliverState::Deleted as i32);
}

#[tokio::test]
async fn leases_are_capped_renewed_and_reaped() {
    let svc =
        Service::start_with("[lease]\ndefault = \"1h\"\nmax = \"2h\"\nreap_interval = \"100ms\"\n")
            .await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let mut node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let sl = a
        .slices
        .clone()
        .create_slice(slice_req("lease", 1, 128 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let created = sl.created_at.unwrap().seconds;
    assert_eq!(
        sl.lease_expires_at.unwrap().seconds - created,
        3600,
        "default lease from config"
    );

    let r = a
        .slices
        .clone()
        .renew_slice(pb::RenewSliceRequest {
            name: "lease".into(),
            duration: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.note.contains("granted 2h instead of 1d"), "{}", r.note);

    // A one-second lease is reaped: the slice expires and its node is told to remove it.
    let mut short = slice_req("short", 1, 128 * MI);
    short.lease = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let s = a
        .slices
        .clone()
        .create_slice(short)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let id = s.slivers[0].id.clone();
    let removed = loop {
        match node
            .recv(Duration::from_secs(5))
            .await
            .expect("a removal")
            .msg
        {
            Some(Msg::Remove(r)) => break r,
            _ => continue,
        }
    };
    assert_eq!(removed, id);
    let s = a
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "short".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, pb::SliceState::Expired as i32);
    let live = a
        .slices
        .clone()
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices;
    assert_eq!(
        live.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["lease"]
    );
}

#[tokio::test]
async fn the_whole_tour_over_tls() {
    let svc = Service::start_tls().await;
    assert!(svc.url().starts_with("https://"));
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = make_user(&a, "alice", "mit").await;
    let node = TestNode::join(&svc, "mit", "n1", 2000, 2 * GI).await;
    wait_ready(&a, 1).await;
    let alice = Clients::new(&svc, Some(&tok)).await;
    let sl = alice
        .slices
        .clone()
        .create_slice(slice_req("secure", 1, 128 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    node.report(&sl.slivers[0].id, pb::SliverState::Running, "")
        .await;
    wait_for("running over TLS", Duration::from_secs(5), || {
        let mut s = alice.slices.clone();
        async move {
            let sl = s
                .get_slice(pb::GetSliceRequest {
                    name: "secure".into(),
                })
                .await
                .ok()?
                .into_inner();
            (sl.state == pb::SliceState::Ready as i32).then_some(())
        }
    })
    .await;
    alice
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "secure".into(),
        })
        .await
        .unwrap();

    // Plain-text clients cannot talk to a TLS server.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut c = slicebed_proto::v1::slice_service_client::SliceServiceClient::new(ch);
        assert!(c.who_am_i(pb::WhoAmIRequest {}).await.is_err());
    }
}
