//! Slivers as real Docker containers: real slice-service, real node-manager processes, the
//! real local Docker engine (inspected through its API), real signals.
//!
//! Needs a running Docker engine and the base image (`node-manager image import`, which the
//! node managers run at start); `.ci/run` provides both.

mod common;

use common::testbed::*;

use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use common::*;
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{enroll_cmd, unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

#[tokio::test]
async fn a_slice_over_three_sites_is_three_hardened_containers() {
    let tb = testbed(&["eth", "kaist", "mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(web_slice("web", 1))
        .await
        .unwrap();
    let s = wait_running(&tb.admin, "web").await;
    assert_eq!(s.slivers.len(), 3);

    for nm in &tb.nodes {
        let cs = containers(&nm.name).await;
        assert_eq!(cs.len(), 1, "one container on {}: {cs:?}", nm.name);
        let info = docker()
            .inspect_container(&cs[0].0, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let hc = info.host_config.expect("host config");
        assert_eq!(hc.nano_cpus, Some(200_000_000), "cpu limit");
        assert_eq!(hc.memory, Some(64 * MI));
        assert_eq!(hc.memory_swap, Some(64 * MI), "no swap beyond memory");
        assert!(hc.pids_limit.unwrap_or(0) > 0, "pids limit");
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(hc
            .cap_add
            .unwrap_or_default()
            .iter()
            .all(|c| !c.contains("SYS_ADMIN") && !c.contains("NET_ADMIN")));
        assert!(hc
            .security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges")));
        assert!(hc.binds.unwrap_or_default().is_empty(), "no host mounts");
        assert!(
            info.mounts.unwrap_or_default().is_empty(),
            "no mounts at all (never the Docker socket)"
        );
        let labels = info.config.unwrap().labels.unwrap();
        let sliver = s.slivers.iter().find(|v| v.node == nm.name).unwrap();
        assert_eq!(
            labels.get("slicebed.slice").map(String::as_str),
            Some("web")
        );
        assert_eq!(labels.get("slicebed.sliver"), Some(&sliver.id));
        assert_eq!(labels.get("slicebed.node"), Some(&nm.name));
        assert!(labels.contains_key("slicebed.generation"));
        let nets: Vec<String> = info
            .network_settings
            .unwrap()
            .networks
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(
            nets,
            vec![format!("sb-{}-web", nm.name)],
            "one network per slice per node"
        );
        // The published port reaches the sliver.
        let port = sliver.ports[0].host_port;
        assert!((nm.ports.0..=nm.ports.1).contains(&port));
        let body = wait_for("http answer", Duration::from_secs(10), || async move {
            http_get(port)
        })
        .await;
        assert!(body.contains("hello from web-"), "{body}");
    }

    // A second slice on the same nodes gets its own network.
    tb.admin
        .slices
        .clone()
        .create_slice(web_slice("other", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "other").await;
    let nets = networks_of(&tb.nodes[0].name).await;
    assert_eq!(nets.len(), 2, "{nets:?}");

    // Delete removes containers and networks.
    for name in ["web", "other"] {
        tb.admin
            .slices
            .clone()
            .delete_slice(pb::DeleteSliceRequest { name: name.into() })
            .await
            .unwrap();
    }
    for nm in &tb.nodes {
        let n = nm.name.clone();
        wait_for(
            "containers and networks removed",
            Duration::from_secs(30),
            || {
                let n = n.clone();
                async move {
                    (containers(&n).await.is_empty() && networks_of(&n).await.is_empty())
                        .then_some(())
                }
            },
        )
        .await;
    }
    let a = tb.admin.clone();
    wait_for(
        "slivers confirmed deleted",
        Duration::from_secs(10),
        || async {
            let s = slice(&a, "web").await?;
            s.slivers
                .iter()
                .all(|v| v.state == pb::SliverState::Deleted as i32)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn kill9_of_a_node_manager_then_restart_adopts_without_duplicates() {
    let mut tb = testbed(&["mit"]).await;
    let mut req = web_slice("adopt", 0);
    req.placement = Some(pb::PlacementRequest {
        slivers: 2,
        ..Default::default()
    });
    tb.admin.slices.clone().create_slice(req).await.unwrap();
    wait_running(&tb.admin, "adopt").await;
    let node = tb.nodes[0].name.clone();
    let mut before: Vec<String> = containers(&node).await.into_iter().map(|c| c.0).collect();
    before.sort();
    assert_eq!(before.len(), 2);

    tb.nodes[0].kill9();
    tb.nodes[0].run();
    // Wait until the agent has reconnected and reconciled at least once.
    wait_for("node back", Duration::from_secs(30), || {
        let a = tb.admin.clone();
        let node = node.clone();
        async move {
            let n = nodes(&a).await.into_iter().find(|n| n.name == node)?;
            (n.state == pb::NodeState::Ready as i32 && n.last_heartbeat.is_some()).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut after: Vec<String> = containers(&node).await.into_iter().map(|c| c.0).collect();
    after.sort();
    assert_eq!(
        before, after,
        "the same containers, adopted: no duplicates, no orphans"
    );
    wait_running(&tb.admin, "adopt").await;
    let _ = &mut tb;
}

#[tokio::test]
async fn a_slice_deleted_while_its_node_manager_is_down_is_removed_on_reconnect() {
    let mut tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(web_slice("offline", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "offline").await;
    let node = tb.nodes[0].name.clone();
    assert_eq!(containers(&node).await.len(), 1);
    tb.nodes[0].kill9();
    tb.admin
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "offline".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        containers(&node).await.len(),
        1,
        "nobody removes it while the node is down"
    );
    tb.nodes[0].run();
    wait_for(
        "orphan removed on reconnect",
        Duration::from_secs(30),
        || {
            let node = node.clone();
            async move { containers(&node).await.is_empty().then_some(()) }
        },
    )
    .await;
    let a = tb.admin.clone();
    wait_for("sliver deleted", Duration::from_secs(10), || async {
        let s = slice(&a, "offline").await?;
        s.slivers
            .iter()
            .all(|v| v.state == pb::SliverState::Deleted as i32)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_service_restart_keeps_states_and_nodes_reconnect() {
    let mut tb = testbed(&["eth", "mit"]).await;
    let before_restart = tb.svc.addr.clone();
    tb.admin
        .slices
        .clone()
        .create_slice(web_slice("steady", 1))
        .await
        .unwrap();
    wait_running(&tb.admin, "steady").await;
    let ids: Vec<Vec<(String, String)>> = {
        let mut v = Vec::new();
        for nm in &tb.nodes {
            v.push(containers(&nm.name).await);
        }
        v
    };
    // Killed and restarted on the same address: node managers reconnect on their own.
    tb.svc.restart_in_place().await;
    let a = Clients::admin(&tb.svc).await;
    wait_ready(&a, 2).await;
    assert_eq!(tb.svc.addr, before_restart);
    let s = wait_running(&a, "steady").await;
    assert_eq!(s.slivers.len(), 2);
    for (nm, before) in tb.nodes.iter().zip(ids) {
        assert_eq!(
            containers(&nm.name).await,
            before,
            "containers untouched by the service restart"
        );
    }
}

#[tokio::test]
async fn a_missing_image_is_refused_at_create_naming_it() {
    // Images are pinned to a digest of the image store when the slice is created (issue 13):
    // one the store does not hold is refused then, saying how to push it, and nothing is placed.
    let tb = testbed(&["mit"]).await;
    let mut req = web_slice("noimage", 1);
    req.image = "no-such-image:1".into();
    let e = tb.admin.slices.clone().create_slice(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("no-such-image:1"), "{}", e.message());
    assert!(
        e.message().contains("slicectl image push"),
        "{}",
        e.message()
    );
    assert!(slice(&tb.admin, "noimage").await.is_none());
}

#[tokio::test]
async fn enrollment_through_the_binary_is_single_use_and_the_credential_is_private() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let out = enroll_cmd(
        &svc,
        &tok,
        &unique("n"),
        &dir.path().join("a"),
        (45000, 45010),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    // The node's private key: created on the node, never sent, readable by its owner only.
    assert!(
        !dir.path().join("a/credential").exists(),
        "no bearer credential"
    );
    let mode = std::fs::metadata(dir.path().join("a/node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = enroll_cmd(
        &svc,
        &tok,
        &unique("n"),
        &dir.path().join("b"),
        (45000, 45010),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already been used"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[tokio::test]
async fn node_managers_work_over_tls() {
    let svc = Service::start_tls().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "mit").await;
    let _nm = NodeManager::start(&svc, "mit", &unique("tls")).await;
    wait_ready(&admin, 1).await;
    admin
        .slices
        .clone()
        .create_slice(web_slice("tlsweb", 1))
        .await
        .unwrap();
    let s = wait_running(&admin, "tlsweb").await;
    assert_eq!(s.slivers.len(), 1);
}

#[tokio::test]
async fn owner_reclaim_suspends_slivers_and_release_resumes_them() {
    let tb = testbed(&["mit"]).await;
    tb.admin
        .slices
        .clone()
        .create_slice(web_slice("owner", 1))
        .await
        .unwrap();
    let before = wait_running(&tb.admin, "owner").await;
    let reclaim = |arg: &str| {
        let out = std::process::Command::new(slicebed_tests::bin("node-manager"))
            .args(["reclaim", arg, "--state-dir"])
            .arg(&tb.nodes[0].state_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    reclaim("on");
    let a = tb.admin.clone();
    let v = wait_for("sliver suspended", Duration::from_secs(15), || async {
        let s = slice(&a, "owner").await?;
        s.slivers
            .into_iter()
            .find(|v| v.state == pb::SliverState::Suspended as i32)
    })
    .await;
    assert!(v.last_error.contains("owner reclaimed"), "{}", v.last_error);
    let cid = containers(&tb.nodes[0].name).await[0].0.clone();
    let paused = docker()
        .inspect_container(&cid, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(
        paused.state.and_then(|s| s.paused),
        Some(true),
        "the container is paused, not stopped"
    );
    reclaim("off");
    let after = wait_running(&tb.admin, "owner").await;
    assert_eq!(after.slivers[0].id, before.slivers[0].id);
    assert_eq!(
        containers(&tb.nodes[0].name).await[0].0,
        cid,
        "resumed, not recreated"
    );
    let ev = events(&tb.admin, "slice/owner").await;
    assert!(
        ev.iter().any(|e| e.action == "state suspended"),
        "each change is an event: {ev:?}"
    );
}
