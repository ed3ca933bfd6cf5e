//! The fetcher against an in-memory store and the fake runtime: single flight, resume from a
//! partial file, a corrupted layer refused, eviction order.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use slicebed_image::{Digest, Manifest};

use super::*;
use crate::runtime::fake::FakeRuntime;

/// An in-memory store that counts fetches and the offsets asked for.
#[derive(Default)]
struct Store {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    fetches: AtomicUsize,
    offsets: Mutex<Vec<(String, u64)>>,
}

impl BlobSource for Arc<Store> {
    fn fetch(
        &self,
        digest: &str,
        offset: u64,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Result<Bytes, String>>, String>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.offsets
            .lock()
            .unwrap()
            .push((digest.to_string(), offset));
        let data = self.blobs.lock().unwrap().get(digest).cloned();
        Box::pin(async move {
            let data = data.ok_or_else(|| "NotFound: no such blob".to_string())?;
            let rest = Bytes::from(data[offset as usize..].to_vec());
            let chunks: Vec<Result<Bytes, String>> = rest
                .chunks(7)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(futures::stream::iter(chunks).boxed())
        })
    }
}

/// Pushes a two-layer image; returns the store and the manifest digest.
fn store() -> (Arc<Store>, String, Manifest) {
    let s = Arc::new(Store::default());
    let l1 = b"layer one bytes".to_vec();
    let l2 = b"layer two, a bit longer".to_vec();
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [d1.as_str(), d2.as_str()]}
    }))
    .unwrap();
    let dc = Digest::of(&config);
    let m = Manifest::new(
        (dc.clone(), config.len() as u64),
        &[(d1.clone(), l1.len() as u64), (d2.clone(), l2.len() as u64)],
    );
    let mb = m.to_bytes();
    let dm = Digest::of(&mb);
    let mut b = s.blobs.lock().unwrap();
    for (d, bytes) in [(dm.clone(), mb), (dc, config), (d1, l1), (d2, l2)] {
        b.insert(d.to_string(), bytes);
    }
    drop(b);
    (s, dm.to_string(), m)
}

async fn until_ready(images: &Images, rt: &FakeRuntime, digest: &str) -> Ready {
    for _ in 0..200 {
        match images
            .prepare(rt, "alice/tool:v1", digest, 1)
            .await
            .unwrap()
        {
            Ready::Pulling(_) => images.changed().await,
            other => return other,
        }
    }
    panic!("never ready");
}

#[tokio::test]
async fn slivers_of_one_image_share_one_fetch_and_it_is_loaded_tagged_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, _) = store();
    let images = Images::new(dir.path().to_path_buf(), DEFAULT_BUDGET);
    images.set_source(Some(Arc::new(store.clone())));
    let rt = FakeRuntime::new("n1");
    // Three slivers ask at once: one fetch.
    for _ in 0..3 {
        let r = images
            .prepare(&rt, "alice/tool:v1", &digest, 1)
            .await
            .unwrap();
        assert!(
            matches!(r, Ready::Pulling(ref m) if m.contains("pulling image alice/tool:v1")),
            "{r:?}"
        );
    }
    let r = until_ready(&images, &rt, &digest).await;
    assert_eq!(r, Ready::Yes(local_ref(&digest)));
    assert_eq!(
        store.fetches.load(Ordering::SeqCst),
        4,
        "manifest, config, two layers once"
    );
    assert!(rt.has_image(&local_ref(&digest)));
    let loads: Vec<String> = rt
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("load"))
        .collect();
    assert_eq!(loads.len(), 1, "{loads:?}");
    // Verified blobs are gone once the engine has the image.
    assert_eq!(
        std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .count(),
        0
    );
    // Asked again: it is there, nothing fetched.
    let r = images
        .prepare(&rt, "alice/tool:v1", &digest, 2)
        .await
        .unwrap();
    assert_eq!(r, Ready::Yes(local_ref(&digest)));
    assert_eq!(store.fetches.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_corrupted_layer_is_refused_naming_its_digest_and_nothing_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, m) = store();
    let bad = m.layers[1].digest.to_string();
    store
        .blobs
        .lock()
        .unwrap()
        .insert(bad.clone(), b"layer two, a bit LONGER".to_vec());
    let images = Images::new(dir.path().to_path_buf(), DEFAULT_BUDGET);
    images.set_source(Some(Arc::new(store.clone())));
    let rt = FakeRuntime::new("n1");
    let Ready::Failed(message) = until_ready(&images, &rt, &digest).await else {
        panic!("a corrupted layer was accepted")
    };
    assert!(
        message.contains(&format!(
            "layer {bad} does not match its digest (got sha256:"
        )),
        "{message}"
    );
    assert!(!rt.has_image(&local_ref(&digest)));
    assert!(!rt.calls().iter().any(|c| c.starts_with("load")));
    assert!(
        !dir.path().join("partial").join(&bad[7..]).exists(),
        "the bad bytes are deleted"
    );
    assert!(!dir.path().join("sha256").join(&bad[7..]).exists());
}

#[tokio::test]
async fn a_fetch_resumes_from_the_partial_file_a_killed_node_manager_left() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, m) = store();
    let layer = m.layers[1].digest.to_string();
    let bytes = store.blobs.lock().unwrap()[&layer].clone();
    // A previous run wrote the first 10 bytes before it died.
    let blobs = Blobs::new(dir.path().to_path_buf());
    std::fs::create_dir_all(dir.path().join("partial")).unwrap();
    std::fs::write(blobs.partial(&layer), &bytes[..10]).unwrap();
    assert_eq!(blobs.resume_offset(&layer), 10);
    let images = Images::new(dir.path().to_path_buf(), DEFAULT_BUDGET);
    images.set_source(Some(Arc::new(store.clone())));
    let rt = FakeRuntime::new("n1");
    assert_eq!(
        until_ready(&images, &rt, &digest).await,
        Ready::Yes(local_ref(&digest))
    );
    let offsets = store.offsets.lock().unwrap().clone();
    assert!(offsets.contains(&(layer.clone(), 10)), "{offsets:?}");
    assert!(!offsets.contains(&(layer, 0)), "{offsets:?}");
}

#[tokio::test]
async fn without_a_connection_a_sliver_waits_and_the_fetch_starts_once_connected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, _) = store();
    let images = Images::new(dir.path().to_path_buf(), DEFAULT_BUDGET);
    let rt = FakeRuntime::new("n1");
    let r = images
        .prepare(&rt, "alice/tool:v1", &digest, 1)
        .await
        .unwrap();
    assert!(
        matches!(r, Ready::Pulling(ref m) if m.contains("waiting for the connection")),
        "{r:?}"
    );
    images.set_source(Some(Arc::new(store)));
    assert_eq!(
        until_ready(&images, &rt, &digest).await,
        Ready::Yes(local_ref(&digest))
    );
}

#[tokio::test]
async fn eviction_removes_the_least_recently_used_image_not_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::new(dir.path().to_path_buf(), 100);
    let rt = FakeRuntime::new("n1");
    for (d, at) in [("sha256:aa", 1), ("sha256:bb", 2), ("sha256:cc", 3)] {
        rt.load_image(&local_ref(d), futures::stream::empty().boxed())
            .await
            .unwrap();
        lock(&images.inner.cache).record(d, 60, at);
    }
    assert!(images.over_budget());
    let in_use: BTreeSet<String> = ["sha256:aa".to_string()].into();
    images.evict(&rt, &in_use).await;
    // 180 bytes over 100: bb (oldest not in use) then cc go; aa is needed.
    assert!(rt.has_image(&local_ref("sha256:aa")));
    assert!(!rt.has_image(&local_ref("sha256:bb")));
    assert!(!rt.has_image(&local_ref("sha256:cc")));
    assert!(!images.over_budget());
}

fn pinned(id: &str, digest: &str) -> crate::domain::SliverSpec {
    crate::domain::SliverSpec {
        sliver_id: id.into(),
        slice: "tool".into(),
        index: 0,
        image: "alice/tool:v1".into(),
        command: vec![],
        env: Default::default(),
        resources: Default::default(),
        ports: vec![],
        restart: crate::domain::RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: digest.into(),
        pull: None,
    }
}

#[tokio::test]
async fn pinned_slivers_report_pulling_then_run_the_fetched_image_never_a_local_tag() {
    use crate::domain::ReportedState;
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, _) = store();
    let images = Images::new(dir.path().to_path_buf(), DEFAULT_BUDGET);
    images.set_source(Some(Arc::new(store.clone())));
    // A local image of the same name (one that would exit at once) must never be run instead.
    let rt = FakeRuntime::new("n1")
        .with_image("alice/tool:v1", crate::runtime::fake::Behaviour::Exit(3));
    let mut rec = crate::reconciler::Reconciler::new(rt.clone()).with_images(Some(images.clone()));
    let desired: std::collections::BTreeMap<_, _> = [pinned("a", &digest), pinned("b", &digest)]
        .into_iter()
        .map(|s| (s.sliver_id.clone(), s))
        .collect();
    let first = rec.pass(Some(&desired)).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    for r in &first {
        assert_eq!(r.state, ReportedState::Creating);
        assert!(
            r.message
                .starts_with("pulling image alice/tool:v1 (sha256:"),
            "{}",
            r.message
        );
    }
    assert!(
        rt.containers().is_empty(),
        "nothing runs before the image is verified"
    );
    let mut running = 0;
    for _ in 0..50 {
        images.changed().await;
        let rs = rec.pass(Some(&desired)).await.unwrap();
        running += rs
            .iter()
            .filter(|r| r.state == ReportedState::Running)
            .count();
        if running == 2 {
            break;
        }
    }
    assert_eq!(running, 2);
    let creates: Vec<String> = rt
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create") || c.starts_with("load"))
        .collect();
    assert_eq!(
        creates.iter().filter(|c| c.starts_with("load")).count(),
        1,
        "{creates:?}"
    );
    assert_eq!(
        store.fetches.load(Ordering::SeqCst),
        4,
        "one fetch for both slivers"
    );
}

#[test]
fn stale_partial_blobs_are_swept_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().to_path_buf());
    std::fs::create_dir_all(dir.path().join("partial")).unwrap();
    let fresh = blobs.partial("sha256:aa");
    std::fs::write(&fresh, b"some").unwrap();
    assert_eq!(blobs.sweep(std::time::Duration::from_secs(3600)), 0);
    assert!(fresh.exists(), "a fetch from the last hour keeps its bytes");
    assert_eq!(blobs.sweep(std::time::Duration::ZERO), 1);
    assert!(!fresh.exists());
}
