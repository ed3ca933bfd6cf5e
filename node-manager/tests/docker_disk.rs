//! Sliver disk on the real engine: a sliver that writes past its disk limit is stopped and
//! reported failed with a reason a researcher can act on — capped by the engine where its
//! storage driver can, else measured by the node manager — and each sliver's log is bounded
//! by its own configuration, not the host's daemon.json. Skips where no engine is reachable.

mod common;
use common::{cleanup, Guard};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use node_manager::domain::{ReportedState, Resources, RestartPolicy, SliverReport, SliverSpec};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::reconciler::Reconciler;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;

async fn engine(node: &str) -> Option<DockerRuntime> {
    let rt = DockerRuntime::connect(None, format!("{node}-{}", std::process::id()))
        .await
        .ok()?
        // Disk is what this test is about, not the firewall (which needs root).
        .allow_unisolated(true);
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return None;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return None;
    }
    cleanup(&rt).await;
    Some(rt)
}

#[tokio::test]
async fn writing_past_the_disk_limit_stops_the_sliver_with_the_reason() {
    let Some(rt) = engine("nmdisk").await else {
        return;
    };
    let _guard = Guard(rt.clone());
    let spec = SliverSpec {
        sliver_id: "w0".into(),
        slice: "disk".into(),
        index: 0,
        image: DEFAULT_TAG.into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "dd if=/dev/zero of=/big bs=1048576 count=128; sync; exec sleep 600".into(),
        ],
        env: BTreeMap::new(),
        resources: Resources {
            cpu_millis: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 16 << 20,
        },
        ports: vec![],
        restart: RestartPolicy::Always,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    };
    let d = BTreeMap::from([(spec.sliver_id.clone(), spec)]);
    let name = format!("sb-{}-w0", rt.node());
    let mut rec = Reconciler::new(rt.clone()).with_disk_interval(Duration::ZERO);
    let mut seen: HashMap<String, SliverReport> = HashMap::new();
    let mut failed = None;
    let mut capped = None;
    // Bounded: the write takes seconds; a pass measures every container's writable layer.
    for _ in 0..120 {
        for r in rec.pass(Some(&d)).await.unwrap() {
            seen.insert(r.sliver_id.clone(), r);
        }
        if let Some(r) = seen.get("w0").filter(|r| r.state == ReportedState::Failed) {
            failed = Some(r.clone());
            break;
        }
        if capped.is_none() {
            if let Ok(c) = rt
                .docker()
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
            {
                capped = Some(c.host_config.and_then(|h| h.storage_opt).is_some());
            }
        }
        if capped == Some(true) {
            // The engine caps the layer: the write fails, the sliver keeps running.
            let used = rt.disk_usage().await.unwrap();
            if let Some(u) = used.first().filter(|u| u.bytes > 0) {
                assert!(u.bytes <= 17 << 20, "the engine capped the layer: {u:?}");
                cleanup(&rt).await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("report: {:?}", seen.get("w0"));
    let info = rt
        .docker()
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .unwrap();
    cleanup(&rt).await;
    let failed = failed.unwrap_or_else(|| {
        panic!(
            "sliver w0 wrote 128 MiB past its 16Mi disk limit and was never stopped; last {:?}",
            seen.get("w0")
        )
    });
    assert!(
        failed.message.starts_with("disk limit 16Mi exceeded: "),
        "the reason names the limit and what was written: {:?}",
        failed.message
    );
    assert!(failed.message.ends_with(" written"), "{:?}", failed.message);
    let state = info.state.unwrap();
    assert_ne!(state.running, Some(true), "the sliver is stopped");
    let log = info.host_config.unwrap().log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    let opts = log.config.unwrap();
    assert_eq!(opts["max-size"], "8m");
    assert_eq!(opts["max-file"], "2");
}
