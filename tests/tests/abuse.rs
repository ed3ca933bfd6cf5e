//! Abuse resistance (issue 10, item 6), against a real service over real sockets: per-user
//! caps on streams, connections that never make a request, and event watches that neither
//! poll the database per stream nor lose events when many watch or one falls behind.
//! No assertion here is about speed; `bench_watch` measures that.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{make_site, make_user};
use futures::StreamExt;
use slicebed_proto::v1 as pb;
use slicebed_tests::{wait_for, Clients, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

fn watch(object: &str, after_id: i64) -> pb::WatchEventsRequest {
    pb::WatchEventsRequest {
        object: object.into(),
        after_id,
    }
}

async fn latest_id(a: &Clients) -> i64 {
    let r = a
        .slices
        .clone()
        .list_events(pb::ListEventsRequest {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list events")
        .into_inner();
    r.events.last().map_or(0, |e| e.id)
}

/// Reads `stream` until it has seen `want` "created" events of sites whose names start with
/// `prefix`; returns their site names in the order received, checking ids only ever grow.
async fn sites_seen(
    stream: &mut tonic::Streaming<pb::Event>,
    prefix: &str,
    want: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut last = 0;
    let read = async {
        while seen.len() < want {
            let e = stream
                .next()
                .await
                .expect("the watch ended early")
                .expect("a watch error");
            assert!(e.id > last, "event {} after {last}: out of order", e.id);
            last = e.id;
            if let Some(name) = e.object.strip_prefix("site/") {
                if name.starts_with(prefix) && e.action == "created" {
                    seen.push(name.to_string());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {want} site events"));
    seen
}

/// Creates sites `{prefix}{0..n}` one after another, so their ids follow that order.
async fn make_sites(a: &Clients, prefix: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        make_site(a, &name).await;
        names.push(name);
    }
    names
}

#[tokio::test]
async fn one_watch_past_the_cap_is_refused_and_other_users_are_unaffected() {
    let svc = Service::start_with("[limits]\nwatch_streams_per_user = 3\n").await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let bob = Clients::new(&svc, Some(&make_user(&a, "bob", "mit").await)).await;

    let mut held = Vec::new();
    for _ in 0..3 {
        let s = alice.slices.clone().watch_events(watch("", 0)).await;
        held.push(s.expect("a watch within the cap").into_inner());
    }
    let e = alice
        .slices
        .clone()
        .watch_events(watch("", 0))
        .await
        .expect_err("a fourth watch of one user must be refused");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("at most 3 concurrent watch streams per user"),
        "{}",
        e.message()
    );

    // Another user is not held to alice's count, and still gets answers and events.
    let mut bobs = bob
        .slices
        .clone()
        .watch_events(watch("site/stanford", 0))
        .await
        .expect("another user's watch")
        .into_inner();
    bob.slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami");
    make_site(&a, "stanford").await;
    let e = tokio::time::timeout(Duration::from_secs(30), bobs.next())
        .await
        .expect("bob's watch delivers")
        .expect("open")
        .expect("an event");
    assert_eq!(e.object, "site/stanford");

    // Closing a watch gives its slot back.
    drop(held.pop());
    let again = wait_for(
        "a closed watch to free its slot",
        Duration::from_secs(10),
        || {
            let mut c = alice.slices.clone();
            async move { c.watch_events(watch("", 0)).await.ok() }
        },
    )
    .await;
    drop(again);
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed() {
    let svc = Service::start_with("[limits]\nfirst_request_timeout = \"1s\"\n").await;

    // Not a byte sent.
    let mut silent = tokio::net::TcpStream::connect(&svc.addr).await.unwrap();
    // A complete HTTP/2 preface and SETTINGS, then nothing: a half-open client.
    let mut half_open = tokio::net::TcpStream::connect(&svc.addr).await.unwrap();
    half_open
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();

    for (what, s) in [("silent", &mut silent), ("half-open", &mut half_open)] {
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the {what} connection was still open 20 s after a 1 s first-request timeout"
        );
    }

    // Real clients are not affected.
    let a = Clients::admin(&svc).await;
    a.slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami after the silent connections");
}

#[tokio::test]
async fn a_connection_with_a_call_in_progress_is_never_idle() {
    let svc =
        Service::start_with("[limits]\nfirst_request_timeout = \"1s\"\nidle_timeout = \"1s\"\n")
            .await;
    let a = Clients::admin(&svc).await;
    let mut w = a
        .slices
        .clone()
        .watch_events(watch("", 0))
        .await
        .expect("watch")
        .into_inner();
    // Well past both timeouts with the stream open and silent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    make_site(&a, "late").await;
    let seen = sites_seen(&mut w, "late", 1).await;
    assert_eq!(seen, ["late"]);
}

#[tokio::test]
async fn events_appended_while_many_watch_reach_every_watcher_in_order() {
    let svc = Service::start_with("[limits]\nwatch_streams_per_user = 40\n").await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "home").await;
    let mut users = Vec::new();
    for i in 0..5 {
        let t = make_user(&a, &format!("u{i}"), "home").await;
        users.push(Clients::new(&svc, Some(&t)).await);
    }
    // 30 admin watches of everything, and each user watching one site it will not own.
    let mut watches = Vec::new();
    for _ in 0..30 {
        let s = a.slices.clone().watch_events(watch("", 0)).await;
        watches.push((String::new(), s.expect("admin watch").into_inner()));
    }
    for (i, u) in users.iter().enumerate() {
        let object = format!("site/w{i}");
        let s = u.slices.clone().watch_events(watch(&object, 0)).await;
        watches.push((format!("w{i}"), s.expect("user watch").into_inner()));
    }

    let names = make_sites(&a, "w", 60).await;
    let readers = watches.into_iter().map(|(only, mut s)| {
        let names = names.clone();
        tokio::spawn(async move {
            if only.is_empty() {
                let seen = sites_seen(&mut s, "w", names.len()).await;
                assert_eq!(
                    seen, names,
                    "an admin watch saw other events or another order"
                );
            } else {
                let seen = sites_seen(&mut s, &only, 1).await;
                assert_eq!(seen, std::slice::from_ref(&only));
            }
        })
    });
    for r in futures::future::join_all(readers).await {
        r.expect("every watcher gets every event, in order");
    }
}

#[tokio::test]
async fn a_watcher_far_behind_or_slow_gets_every_event_once_in_order() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let from = latest_id(&a).await;
    // More than any one page the service reads at a time.
    let before = make_sites(&a, "b", 1300).await;

    // Starts 1300 events behind, while more are appended.
    let mut behind = a
        .slices
        .clone()
        .watch_events(watch("", from))
        .await
        .expect("watch from the past")
        .into_inner();
    // Starts now and is not read until everything is written.
    let mut slow = a
        .slices
        .clone()
        .watch_events(watch("", 0))
        .await
        .expect("watch")
        .into_inner();
    let writer = {
        let a = a.clone();
        tokio::spawn(async move { make_sites(&a, "c", 300).await })
    };
    let seen = sites_seen(&mut behind, "b", before.len()).await;
    assert_eq!(seen, before, "the catch-up lost or reordered events");
    let after = writer.await.unwrap();
    let seen = sites_seen(&mut behind, "c", after.len()).await;
    assert_eq!(seen, after, "events appended during the catch-up were lost");
    let seen = sites_seen(&mut slow, "c", after.len()).await;
    assert_eq!(seen, after, "the slow reader lost events");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), after.len());
}
