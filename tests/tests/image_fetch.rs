//! Images fetched on demand (issue 13): an image pushed to the store with raw ImageService
//! calls runs on three sites, every node running exactly the slice's pinned digest (read back
//! from the real Docker engine); re-pushing the tag leaves the slice's digest alone; a layer
//! corrupted on the service's disk is refused by the node with a clear sliver error; another
//! user's private image is refused at create, naming it.

mod common;

use std::time::Duration;

use common::testbed::{docker, slice, testbed};
use common::{make_user, slice_req};
use slicebed_image::{base, Digest, Manifest};
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::image_service_client::ImageServiceClient;
use slicebed_tests::client::{channel, Bearer};
use slicebed_tests::{wait_for, Clients, Service};

type ImageClient = ImageServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

async fn images(svc: &Service, token: &str) -> ImageClient {
    ImageServiceClient::with_interceptor(channel(svc).await, Bearer::new(token).unwrap())
        .max_decoding_message_size(8 << 20)
}

/// A layer holding one file.
fn layer(path: &str, text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, path, text.as_bytes()).unwrap();
    b.into_inner().unwrap()
}

/// Pushes the base image's layer plus `extra` as `reference`; returns the manifest digest,
/// the config digest and the extra layer's digest.
async fn push(
    svc: &Service,
    token: &str,
    reference: &str,
    extra: &str,
) -> (String, String, String) {
    push_layer(svc, token, reference, layer("hello.txt", extra)).await
}

/// Pushes the base image's layer plus the layer `top` as `reference` (digests as [`push`]).
async fn push_layer(
    svc: &Service,
    token: &str,
    reference: &str,
    top: Vec<u8>,
) -> (String, String, String) {
    let host = base::build_from_host().expect("a static busybox (busybox-static) on this host");
    let layers = [host.layer.clone(), top.clone()];
    let digests: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": base::oci_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": digests.iter().map(|d| d.as_str()).collect::<Vec<_>>()}
    }))
    .unwrap();
    let dc = Digest::of(&config);
    // Connected only now: the service closes a connection that stays silent after opening.
    let mut c = images(svc, token).await;
    for (d, bytes) in digests.iter().zip(&layers).chain([(&dc, &config)]) {
        // What the store already lets the caller use is not sent again (the base layer).
        let state = c
            .blob_status(pb::BlobStatusRequest {
                digests: vec![d.to_string()],
            })
            .await
            .expect("blob status")
            .into_inner();
        if state.blobs.first().is_some_and(|b| b.present) {
            continue;
        }
        let chunks: Vec<pb::BlobChunk> = bytes
            .chunks(slicebed_image::CHUNK_BYTES)
            .scan(0u64, |off, data| {
                let c = pb::BlobChunk {
                    digest: d.to_string(),
                    offset: *off,
                    data: data.to_vec(),
                    size: bytes.len() as u64,
                };
                *off += data.len() as u64;
                Some(c)
            })
            .collect();
        c.push_blob(tokio_stream::iter(chunks))
            .await
            .expect("push blob");
    }
    let sizes: Vec<(Digest, u64)> = digests
        .iter()
        .cloned()
        .zip(layers.iter().map(|l| l.len() as u64))
        .collect();
    let manifest = Manifest::new((dc.clone(), config.len() as u64), &sizes).to_bytes();
    let image = c
        .commit_image(pb::CommitImageRequest {
            reference: reference.into(),
            manifest: manifest.clone(),
        })
        .await
        .expect("commit image")
        .into_inner();
    assert_eq!(image.digest, Digest::of(&manifest).to_string());
    (image.digest, dc.to_string(), digests[1].to_string())
}

/// The image id and image reference of the container of each sliver of `name`.
async fn images_run(a: &Clients, name: &str) -> Vec<(String, String)> {
    let s = slice(a, name).await.expect("slice");
    let d = docker();
    let mut out = Vec::new();
    for v in &s.slivers {
        let list = d
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(
                    [(
                        "label".to_string(),
                        vec![format!("slicebed.sliver={}", v.id)],
                    )]
                    .into(),
                ),
                ..Default::default()
            }))
            .await
            .unwrap();
        let c = list
            .first()
            .unwrap_or_else(|| panic!("no container for sliver {}", v.id));
        out.push((
            c.image_id.clone().unwrap_or_default(),
            c.image.clone().unwrap_or_default(),
        ));
    }
    out
}

#[tokio::test]
async fn a_pushed_image_runs_on_three_sites_as_exactly_the_pinned_digest() {
    let tb = testbed(&["mit", "eth", "uba"]).await;
    let (digest, config, _) =
        push(&tb.svc, &tb.svc.admin_token, "admin/hello:v1", "first push").await;
    let mut req = slice_req("hello", 0, 64 << 20);
    req.image = "admin/hello:v1".into();
    req.command = vec![
        "sh".into(),
        "-c".into(),
        "cat /hello.txt; sleep 3600".into(),
    ];
    req.placement = Some(pb::PlacementRequest {
        per_site: 1,
        ..Default::default()
    });
    tb.admin
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create");
    let a = tb.admin.clone();
    let s = wait_for("three slivers running", Duration::from_secs(90), || async {
        let s = slice(&a, "hello").await?;
        if let Some(v) = s
            .slivers
            .iter()
            .find(|v| v.state == pb::SliverState::Failed as i32)
        {
            panic!("sliver failed: {}", v.last_error);
        }
        (s.slivers.len() == 3
            && s.slivers
                .iter()
                .all(|v| v.state == pb::SliverState::Running as i32))
        .then_some(s)
    })
    .await;
    assert_eq!(
        s.image_digest, digest,
        "the slice shows the digest it pinned"
    );
    // slicectl shows it too, in its table and in -o json.
    let show = |json: bool| {
        let cfg = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--server",
            tb.svc.url_str(),
            "--token",
            tb.svc.admin_token.as_str(),
        ];
        if json {
            args.extend(["-o", "json"]);
        }
        args.extend(["slice", "show", "hello"]);
        let out = std::process::Command::new(slicebed_tests::bin("slicectl"))
            .args(&args)
            .env("XDG_CONFIG_HOME", cfg.path())
            .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
            .env_remove("SLICECTL_SERVER")
            .env_remove("SLICECTL_TOKEN")
            .output()
            .expect("run slicectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = show(false);
    assert!(text.contains("Digest") && text.contains(&digest), "{text}");
    let v: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(v["image_digest"], serde_json::json!(digest), "{v}");
    let hex = digest.strip_prefix("sha256:").unwrap();
    for (image_id, reference) in images_run(&tb.admin, "hello").await {
        assert_eq!(image_id, config, "the engine runs the pushed config");
        assert_eq!(reference, format!("slicebed/store:{hex}"));
    }
    // A new push of the same tag: the running slice keeps its digest.
    let (second, _, _) = push(
        &tb.svc,
        &tb.svc.admin_token,
        "admin/hello:v1",
        "second push",
    )
    .await;
    assert_ne!(second, digest);
    let s = slice(&tb.admin, "hello").await.unwrap();
    assert_eq!(s.image_digest, digest);
}

#[tokio::test]
async fn a_layer_corrupted_in_the_store_is_refused_by_the_node() {
    let tb = testbed(&["mit"]).await;
    let (_, _, top) = push(
        &tb.svc,
        &tb.svc.admin_token,
        "admin/bad:v1",
        "will be corrupted",
    )
    .await;
    let path = tb.svc.dir.join("blobs").join("sha256").join(&top[7..]);
    let mut bytes = std::fs::read(&path).expect("the stored layer");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut req = slice_req("bad", 1, 64 << 20);
    req.image = "admin/bad:v1".into();
    tb.admin
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create");
    let a = tb.admin.clone();
    let v = wait_for("sliver failed", Duration::from_secs(60), || async {
        slice(&a, "bad")
            .await?
            .slivers
            .into_iter()
            .find(|v| v.state == pb::SliverState::Failed as i32)
    })
    .await;
    assert!(
        v.last_error.contains(&format!(
            "layer {top} does not match its digest (got sha256:"
        )),
        "{}",
        v.last_error
    );
}

#[tokio::test]
async fn another_users_private_image_is_refused_at_create_naming_it() {
    let tb = testbed(&["mit"]).await;
    let alice = make_user(&tb.admin, "alice", "mit").await;
    let bob = make_user(&tb.admin, "bob", "mit").await;
    push(&tb.svc, &alice, "alice/secret:v1", "alice's").await;
    let bob = Clients::new(&tb.svc, Some(&bob)).await;
    let mut req = slice_req("steal", 1, 64 << 20);
    req.image = "alice/secret:v1".into();
    let e = bob.slices.clone().create_slice(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("alice/secret:v1") && e.message().contains("slicectl image push"),
        "{}",
        e.message()
    );
    assert!(
        slice(&tb.admin, "steal").await.is_none(),
        "nothing was created"
    );
}

/// A node manager run by the test itself with a small image cache budget.
struct Budgeted(std::process::Child);

impl Budgeted {
    fn run(nm: &mut slicebed_tests::nm::NodeManager, budget: &str) -> Self {
        nm.kill9();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(nm.state_dir.parent().unwrap().join("node-manager.log"))
            .unwrap();
        let child = std::process::Command::new(slicebed_tests::bin("node-manager"))
            .args(["run", "--image-cache-budget", budget, "--state-dir"])
            .arg(&nm.state_dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node-manager");
        Budgeted(child)
    }
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn has_tag(reference: &str) -> bool {
    docker().inspect_image(reference).await.is_ok()
}

async fn run_slice(a: &Clients, name: &str, image: &str) {
    let mut req = slice_req(name, 1, 64 << 20);
    req.image = image.into();
    req.command = vec!["sleep".into(), "3600".into()];
    a.slices.clone().create_slice(req).await.expect("create");
    wait_for("sliver running", Duration::from_secs(60), || async {
        let s = slice(a, name).await?;
        (s.slivers.len() == 1 && s.slivers[0].state == pb::SliverState::Running as i32)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn over_its_budget_a_node_evicts_the_least_recently_used_image_no_sliver_needs() {
    let mut tb = testbed(&["mit"]).await;
    // Each image is about 2 MiB (busybox plus a small layer): two exceed 3 MiB.
    let _nm = Budgeted::run(&mut tb.nodes[0], "3Mi");
    let tag = |d: &str| format!("slicebed/store:{}", &d[7..]);
    let unique = slicebed_tests::nm::unique("evict");
    let (a, _, _) = push(
        &tb.svc,
        &tb.svc.admin_token,
        "admin/evict-a:v1",
        &format!("a {unique}"),
    )
    .await;
    let (b, _, _) = push(
        &tb.svc,
        &tb.svc.admin_token,
        "admin/evict-b:v1",
        &format!("b {unique}"),
    )
    .await;
    run_slice(&tb.admin, "first", "admin/evict-a:v1").await;
    assert!(has_tag(&tag(&a)).await);
    // While "first" runs, its image is never evicted, even over budget.
    run_slice(&tb.admin, "second", "admin/evict-b:v1").await;
    assert!(
        has_tag(&tag(&a)).await,
        "an image a running sliver needs was evicted"
    );
    assert!(has_tag(&tag(&b)).await);
    // "first" goes: its image is now the least recently used one nobody needs.
    tb.admin
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "first".into(),
        })
        .await
        .expect("delete");
    let evicted = tag(&a);
    wait_for(
        "the deleted slice's image evicted",
        Duration::from_secs(30),
        || async { (!has_tag(&evicted).await).then_some(()) },
    )
    .await;
    assert!(has_tag(&tag(&b)).await, "the image in use was evicted");
}

/// `n` bytes that do not repeat (xorshift), as a layer holding one file.
fn big_layer(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, "big.bin", data.as_slice()).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn a_node_manager_killed_mid_fetch_resumes_and_ends_with_one_image() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Made before connecting: the service closes connections that stay silent.
    let layer = big_layer(300 << 20, seed);
    let mut tb = testbed(&["mit"]).await;
    let (digest, _, big) = push_layer(&tb.svc, &tb.svc.admin_token, "admin/big:v1", layer).await;
    let mut req = slice_req("big", 1, 64 << 20);
    req.image = "admin/big:v1".into();
    req.command = vec!["sleep".into(), "3600".into()];
    tb.admin
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create");
    // Kill the node manager as soon as part of the big layer is on its disk.
    let partial = tb.nodes[0]
        .state_dir
        .join("images")
        .join("partial")
        .join(&big[7..]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tb.nodes[0].kill9();
    let held = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(
        held > 0 && held < 300 << 20,
        "killed mid-fetch ({held} bytes held)"
    );
    tb.nodes[0].run();
    let a = tb.admin.clone();
    wait_for(
        "sliver running after the restart",
        Duration::from_secs(120),
        || async {
            let s = slice(&a, "big").await?;
            if let Some(v) = s
                .slivers
                .iter()
                .find(|v| v.state == pb::SliverState::Failed as i32)
            {
                panic!("sliver failed: {}", v.last_error);
            }
            (s.slivers[0].state == pb::SliverState::Running as i32).then_some(())
        },
    )
    .await;
    // The big layer was fetched from the start once: the restart asked for the rest only.
    let fetches = common::events(&tb.admin, &format!("blob/{big}"))
        .await
        .into_iter()
        .filter(|e| e.action == "image.fetch")
        .count();
    assert_eq!(fetches, 1, "the layer was fetched from offset 0 again");
    // One image, one container, no leftovers.
    let hex = &digest[7..];
    assert!(has_tag(&format!("slicebed/store:{hex}")).await);
    let runs = images_run(&tb.admin, "big").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, format!("slicebed/store:{hex}"));
    let containers = common::testbed::containers(&tb.nodes[0].name).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let left: Vec<_> = std::fs::read_dir(partial.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}
