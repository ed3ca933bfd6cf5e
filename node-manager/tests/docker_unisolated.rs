//! A node that cannot isolate slices (here: no `iptables` on the PATH of this test process,
//! which is why this file holds one test alone) refuses slivers, naming why and what to do,
//! and says so in its capabilities; with `--allow-unisolated` it runs them. Skips where no
//! engine is reachable.

use std::collections::BTreeMap;

use node_manager::domain::{Resources, RestartPolicy, SliverSpec};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;

#[tokio::test]
async fn without_iptables_slivers_are_refused_unless_allowed() {
    let empty = tempfile::tempdir().unwrap();
    // Only this test runs in this process: nothing else reads PATH meanwhile.
    std::env::set_var("PATH", empty.path());
    let node = format!("nmuniso-{}", std::process::id());
    let Ok(rt) = DockerRuntime::connect(None, node.clone()).await else {
        eprintln!("skipping: no Docker engine");
        return;
    };
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return;
    }
    let spec = SliverSpec {
        sliver_id: "u0".into(),
        slice: "open".into(),
        index: 0,
        image: DEFAULT_TAG.into(),
        command: vec!["sleep".into(), "300".into()],
        env: BTreeMap::new(),
        resources: Resources {
            cpu_millis: 100,
            memory_bytes: 32 << 20,
            disk_bytes: 0,
        },
        ports: vec![],
        restart: RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    };
    let refused = rt.ensure_network("open").await.unwrap_err().to_string();
    assert!(
        refused.contains("cannot isolate slices") && refused.contains("--allow-unisolated"),
        "{refused}"
    );
    let refused = rt.create_and_start(&spec).await.unwrap_err().to_string();
    assert!(refused.contains("cannot isolate slices"), "{refused}");
    assert!(rt.isolation().await.is_err());
    assert!(!rt.capabilities().isolation);
    assert!(
        rt.list_networks().await.unwrap().is_empty(),
        "nothing was created"
    );

    let allowed = rt.allow_unisolated(true);
    allowed.ensure_network("open").await.unwrap();
    let id = allowed.create_and_start(&spec).await.unwrap();
    assert!(!allowed.capabilities().isolation);
    allowed.remove(&id).await.unwrap();
    allowed.remove_network("open").await.unwrap();
    assert!(allowed.list_networks().await.unwrap().is_empty());
}
