//! Sliver isolation end to end: a real slice-service, real node managers (run as root, so
//! they install their firewall rules) and the real Docker engine. A sliver cannot open
//! connections to its node's host, while its slice peer answers; a sliver that writes past its
//! disk limit is stopped and the researcher reads why.
//!
//! Needs root, iptables, a running Docker engine and the base image; `.ci/run` provides them.

mod common;

use common::testbed::*;

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use common::*;
use futures::StreamExt;
use slicebed_proto::v1 as pb;
use slicebed_tests::wait_for;
use tokio::io::AsyncWriteExt;

/// Runs `sh -c script` in a container; what it printed.
async fn run_in(container: &str, script: &str) -> String {
    let d = docker();
    let exec = d
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["sh".to_string(), "-c".to_string(), script.to_string()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        d.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&chunk.to_string());
        }
    }
    text
}

/// What `host:port` answers the sliver (nc gives up after 3 s).
async fn fetch(container: &str, host: &str, port: u16) -> String {
    run_in(
        container,
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>&1; true"),
    )
    .await
}

#[tokio::test]
async fn a_sliver_reaches_its_peer_but_not_its_host() {
    let tb = testbed(&["iso"]).await;
    let node = tb.nodes[0].name.clone();
    let mut req = web_slice("fenced", 2);
    req.ports.clear();
    tb.admin.slices.clone().create_slice(req).await.unwrap();
    wait_running(&tb.admin, "fenced").await;
    let cs = containers(&node).await;
    assert_eq!(cs.len(), 2, "two slivers on {node}: {cs:?}");
    let (me, peer) = (&cs[0].0, &cs[1].0);

    // A listener on every host address, the bridge gateway among them.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"host-secret\n").await;
        }
    });
    let gateway = run_in(me, "ip route | awk '/default/ {print $3}'").await;
    let gateway = gateway.trim().to_string();
    assert!(!gateway.is_empty(), "the sliver has a default route");
    let peer_ip = run_in(peer, "hostname -i").await.trim().to_string();

    let to_peer = fetch(me, &peer_ip, 8080).await;
    let to_host = fetch(me, &gateway, port).await;
    serve.abort();
    assert!(
        to_peer.contains("hello from"),
        "a sliver reaches its slice peer at {peer_ip}:8080: {to_peer:?}"
    );
    assert!(
        !to_host.contains("host-secret"),
        "a sliver must not reach its host at {gateway}:{port}: {to_host:?}"
    );
}

#[tokio::test]
async fn writing_past_the_disk_limit_stops_the_sliver_and_says_why() {
    let tb = testbed(&["dsk"]).await;
    let req = pb::CreateSliceRequest {
        name: "filler".into(),
        image: "slicebed/base:latest".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "dd if=/dev/zero of=/big bs=1048576 count=128; exec sleep 600".into(),
        ],
        resources: Some(pb::Resources {
            cpu_millis: 200,
            memory_bytes: 64 * MI,
            disk_bytes: 16 * MI,
        }),
        placement: Some(pb::PlacementRequest {
            slivers: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    tb.admin.slices.clone().create_slice(req).await.unwrap();
    // The node manager measures every 30 s; bounded well above that.
    let reason = wait_for(
        "sliver of slice filler failed for its disk use",
        Duration::from_secs(150),
        || async {
            let s = slice(&tb.admin, "filler").await?;
            let v = s.slivers.first()?;
            (v.state == pb::SliverState::Failed as i32).then(|| v.last_error.clone())
        },
    )
    .await;
    assert!(
        reason.starts_with("disk limit 16Mi exceeded: ") && reason.ends_with(" written"),
        "the researcher reads why: {reason:?}"
    );
    let cs = containers(&tb.nodes[0].name).await;
    let info = docker()
        .inspect_container(
            &cs[0].0,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_ne!(
        info.state.unwrap().running,
        Some(true),
        "the sliver is stopped"
    );
}
