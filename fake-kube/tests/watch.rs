//! kube-runtime's watcher, unchanged, against the fake: it sees nodes join, leave and be
//! cordoned, and after the fake forgets its history (410 Gone) it lists again and carries on.

mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use slicebed_fake_kube::NodeConfig;

type Events = futures::stream::BoxStream<'static, Result<watcher::Event<Node>, watcher::Error>>;

/// The next event matching `pick`, skipping others, within 10 s.
async fn next_matching<T>(
    s: &mut Events,
    what: &str,
    mut pick: impl FnMut(&Result<watcher::Event<Node>, watcher::Error>) -> Option<T>,
) -> T {
    let fut = async {
        loop {
            let ev = s.next().await.expect("the watcher stream does not end");
            if let Some(v) = pick(&ev) {
                return v;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

#[tokio::test]
async fn the_watcher_sees_nodes_join_leave_and_get_cordoned() {
    let env = common::start(2).await;
    let nodes = Api::<Node>::all(env.client.clone());
    let mut s: Events = watcher(nodes.clone(), watcher::Config::default()).boxed();
    let mut initial = vec![];
    next_matching(&mut s, "the initial list", |e| match e {
        Ok(watcher::Event::InitApply(n)) => {
            initial.push(name(n));
            None
        }
        Ok(watcher::Event::InitDone) => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(initial, vec!["fake-node-1", "fake-node-2"]);

    env.fake.add_node(&NodeConfig::new("joined")).unwrap();
    next_matching(&mut s, "the joined node", |e| {
        matches!(e, Ok(watcher::Event::Apply(n)) if name(n) == "joined").then_some(())
    })
    .await;

    // Cordon exactly as kubectl does: a strategic merge patch of spec.unschedulable.
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes
        .patch(
            "fake-node-1",
            &PatchParams::default(),
            &Patch::Strategic(&cordon),
        )
        .await
        .unwrap();
    next_matching(&mut s, "the cordon", |e| match e {
        Ok(watcher::Event::Apply(n)) if name(n) == "fake-node-1" => {
            n.spec.as_ref().and_then(|s| s.unschedulable).filter(|u| *u)
        }
        _ => None,
    })
    .await;

    assert!(env.fake.remove_node("fake-node-2"));
    next_matching(&mut s, "the node leaving", |e| {
        matches!(e, Ok(watcher::Event::Delete(n)) if name(n) == "fake-node-2").then_some(())
    })
    .await;
}

#[tokio::test]
async fn after_410_gone_the_watcher_lists_again_and_sees_what_changed_meanwhile() {
    let env = common::start(1).await;
    let nodes = Api::<Node>::all(env.client.clone());
    let mut s: Events = watcher(nodes, watcher::Config::default()).boxed();
    next_matching(&mut s, "the initial list", |e| {
        matches!(e, Ok(watcher::Event::InitDone)).then_some(())
    })
    .await;

    // History forgotten and open watches cut: the watcher resumes from its old version, is told
    // 410 Gone, and must relist; a node added meanwhile shows up in that relist.
    env.fake.expire_watches();
    env.fake.add_node(&NodeConfig::new("while-away")).unwrap();
    next_matching(&mut s, "the 410 error", |e| match e {
        Err(watcher::Error::WatchError(st)) => {
            assert_eq!(st.code, 410, "{st:?}");
            assert!(st.message.contains("too old resource version"), "{st:?}");
            Some(())
        }
        _ => None,
    })
    .await;
    let mut relisted = vec![];
    next_matching(&mut s, "the relist", |e| match e {
        Ok(watcher::Event::Init) => None,
        Ok(watcher::Event::InitApply(n)) => {
            relisted.push(name(n));
            None
        }
        Ok(watcher::Event::InitDone) => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(relisted, vec!["fake-node-1", "while-away"]);
}

#[tokio::test]
async fn watches_send_bookmarks_and_refuse_versions_older_than_the_history() {
    let mut config = slicebed_fake_kube::Config::with_nodes(1);
    config.history = 3;
    config.timings.bookmark_interval = Duration::from_millis(100);
    let env = common::start_with(config).await;
    let nodes = Api::<Node>::all(env.client.clone());
    let start = env.fake.resource_version();
    for i in 0..5 {
        env.fake
            .add_node(&NodeConfig::new(&format!("n{i}")))
            .unwrap();
    }
    let wp = kube::api::WatchParams::default();
    let mut old = nodes.watch(&wp, &start.to_string()).await.unwrap().boxed();
    match old.next().await {
        Some(Ok(kube::api::WatchEvent::Error(st))) => assert_eq!(st.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let now = env.fake.resource_version();
    let mut fresh = nodes.watch(&wp, &now.to_string()).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(5), fresh.next()).await {
        Ok(Some(Ok(kube::api::WatchEvent::Bookmark(b)))) => {
            assert_eq!(b.metadata.resource_version, now.to_string())
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
}

#[tokio::test]
async fn the_streaming_list_watcher_gets_its_initial_objects_from_the_watch() {
    let env = common::start(2).await;
    let nodes = Api::<Node>::all(env.client.clone());
    // sendInitialEvents=true: the initial objects arrive as ADDED on the watch itself, ended by
    // a bookmark annotated k8s.io/initial-events-end.
    let mut s: Events = watcher(nodes, watcher::Config::default().streaming_lists()).boxed();
    let mut initial = vec![];
    next_matching(&mut s, "the streamed initial list", |e| match e {
        Ok(watcher::Event::InitApply(n)) => {
            initial.push(name(n));
            None
        }
        Ok(watcher::Event::InitDone) => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(initial, vec!["fake-node-1", "fake-node-2"]);
    env.fake.add_node(&NodeConfig::new("later")).unwrap();
    next_matching(&mut s, "the node added after", |e| {
        matches!(e, Ok(watcher::Event::Apply(n)) if name(n) == "later").then_some(())
    })
    .await;
}
