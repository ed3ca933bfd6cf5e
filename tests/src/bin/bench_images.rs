//! `bench_images`: the image store against `docker save | docker load` on the same engine.
//!
//! 1. Moving a new ~200 MiB image of four layers (the base layer and three of random bytes,
//!    new in every round so nothing is cached): pushed to the store by raw ImageService calls
//!    (BlobStatus, chunked PushBlob, CommitImage), then a one-sliver slice of it created and
//!    timed until it runs (the node fetches, verifies and loads it, then starts the container);
//!    against `docker save` of that same image and `docker load` of the archive after removing
//!    it, through the same engine's API (bollard). Rounds interleave the two; medians and ratios.
//! 2. Time to the first running sliver, and to all three, of a new image on three nodes (three
//!    node managers on three sites, sharing this engine).
//!
//! Usage: `SLICEBED_BIN_DIR=target/release target/release/bench_images [ROUNDS]` (default 3).

use std::time::{Duration, Instant};

use bollard::query_parameters::{ImportImageOptions, RemoveImageOptions};
use bollard::Docker;
use futures::StreamExt;
use slicebed_image::{base, Digest, Manifest};
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::image_service_client::ImageServiceClient;
use slicebed_tests::client::{channel, Bearer};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

const MIB: f64 = (1 << 20) as f64;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A layer of one file of `n` bytes that do not repeat (xorshift from `seed`).
fn random_layer(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(n + 8);
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
    b.append_data(&mut h, format!("data-{seed:x}.bin"), data.as_slice())
        .unwrap();
    b.into_inner().unwrap()
}

/// Pushes the base layer plus three ~66 MiB layers as `reference`; returns the manifest
/// digest and the bytes pushed.
async fn push(svc: &Service, reference: &str, seed: u64) -> (String, u64, Duration) {
    let host = base::build_from_host().expect("a static busybox (busybox-static)");
    let mut layers = vec![host.layer.clone()];
    for i in 0..3 {
        layers.push(random_layer(66 << 20, seed.wrapping_mul(7).wrapping_add(i)));
    }
    let digests: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": base::oci_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": digests.iter().map(|d| d.as_str()).collect::<Vec<_>>()}
    }))
    .unwrap();
    let dc = Digest::of(&config);
    let started = Instant::now();
    let mut c = ImageServiceClient::with_interceptor(
        channel(svc).await,
        Bearer::new(&svc.admin_token).unwrap(),
    );
    let mut sent = 0u64;
    for (d, bytes) in digests.iter().zip(&layers).chain([(&dc, &config)]) {
        let state = c
            .blob_status(pb::BlobStatusRequest {
                digests: vec![d.to_string()],
            })
            .await
            .unwrap()
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
        c.push_blob(tokio_stream::iter(chunks)).await.unwrap();
        sent += bytes.len() as u64;
    }
    let sizes: Vec<(Digest, u64)> = digests
        .iter()
        .cloned()
        .zip(layers.iter().map(|l| l.len() as u64))
        .collect();
    let manifest = Manifest::new((dc, config.len() as u64), &sizes).to_bytes();
    let image = c
        .commit_image(pb::CommitImageRequest {
            reference: reference.into(),
            manifest,
        })
        .await
        .unwrap()
        .into_inner();
    (image.digest, sent, started.elapsed())
}

fn slice_of(name: &str, image: &str, per_site: u32) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: image.into(),
        command: vec!["sleep".into(), "3600".into()],
        resources: Some(pb::Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 30,
        }),
        placement: Some(pb::PlacementRequest {
            per_site,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the slice and returns the times to its first and to its last running sliver.
async fn run(a: &Clients, req: pb::CreateSliceRequest, n: usize) -> (Duration, Duration) {
    let name = req.name.clone();
    let started = Instant::now();
    a.slices.clone().create_slice(req).await.unwrap();
    let mut first = None;
    loop {
        let s = a
            .slices
            .clone()
            .get_slice(pb::GetSliceRequest { name: name.clone() })
            .await
            .unwrap()
            .into_inner();
        let running = s
            .slivers
            .iter()
            .filter(|v| v.state == pb::SliverState::Running as i32)
            .count();
        if let Some(v) = s
            .slivers
            .iter()
            .find(|v| v.state == pb::SliverState::Failed as i32)
        {
            panic!("sliver failed: {}", v.last_error);
        }
        if running > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if running == n {
            return (first.unwrap(), started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "slice {name} not running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delete(a: &Clients, name: &str) {
    a.slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: name.into() })
        .await
        .unwrap();
    wait_for("slice deleted", Duration::from_secs(60), || async {
        let s = a
            .slices
            .clone()
            .get_slice(pb::GetSliceRequest { name: name.into() })
            .await
            .ok()?
            .into_inner();
        s.slivers
            .iter()
            .all(|v| v.state == pb::SliverState::Deleted as i32)
            .then_some(())
    })
    .await;
}

/// `docker save` of `reference` into memory, the image removed, then `docker load` of it.
async fn save_and_load(d: &Docker, reference: &str) -> (Duration, Duration) {
    let started = Instant::now();
    let mut archive = Vec::new();
    let mut s = d.export_image(reference);
    while let Some(chunk) = s.next().await {
        archive.extend_from_slice(&chunk.unwrap());
    }
    let save = started.elapsed();
    d.remove_image(reference, None::<RemoveImageOptions>, None)
        .await
        .unwrap();
    let started = Instant::now();
    let mut l = d.import_image(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_full(archive.into()),
        None,
    );
    while let Some(r) = l.next().await {
        r.unwrap();
    }
    (save, started.elapsed())
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let d = Docker::connect_with_local_defaults().unwrap();
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    for site in ["mit", "eth", "uba"] {
        a.admin
            .clone()
            .create_site(pb::CreateSiteRequest {
                site: Some(pb::Site {
                    name: site.into(),
                    enabled: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let mut nms = Vec::new();
    for site in ["mit", "eth", "uba"] {
        nms.push(NodeManager::start(&svc, site, &unique(site)).await);
    }
    let seed0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (mut pushes, mut fetches, mut saves, mut loads) = (vec![], vec![], vec![], vec![]);
    let mut size = 0;
    for round in 0..rounds {
        let reference = format!("admin/bench:r{round}");
        let (digest, sent, push_took) = push(&svc, &reference, seed0 + round as u64).await;
        size = sent;
        let mut req = slice_of(&format!("r{round}"), &reference, 0);
        req.placement = Some(pb::PlacementRequest {
            slivers: 1,
            ..Default::default()
        });
        let (_, fetch_took) = run(&a, req, 1).await;
        delete(&a, &format!("r{round}")).await;
        let local = format!("slicebed/store:{}", &digest[7..]);
        let (save, load) = save_and_load(&d, &local).await;
        // The loaded copy goes: the next round starts from an engine without it.
        let _ = d
            .remove_image(&local, None::<RemoveImageOptions>, None)
            .await;
        eprintln!(
            "round {round}: push {push_took:?}, create→running {fetch_took:?}, save {save:?}, load {load:?}"
        );
        pushes.push(push_took);
        fetches.push(fetch_took);
        saves.push(save);
        loads.push(load);
    }
    let (p, f, s, l) = (
        median(pushes),
        median(fetches),
        median(saves),
        median(loads),
    );
    let mib = size as f64 / MIB;
    println!("image of {mib:.0} MiB in 4 layers, median of {rounds} interleaved rounds:");
    println!(
        "  store: push {:.2} s ({:.0} MiB/s), create→running with the node's fetch {:.2} s ({:.0} MiB/s)",
        p.as_secs_f64(),
        mib / p.as_secs_f64(),
        f.as_secs_f64(),
        mib / f.as_secs_f64()
    );
    println!(
        "  docker: save {:.2} s, load {:.2} s",
        s.as_secs_f64(),
        l.as_secs_f64()
    );
    println!(
        "  ratios: push/save {:.2}x, fetch+run/load {:.2}x, (push+fetch+run)/(save+load) {:.2}x",
        p.as_secs_f64() / s.as_secs_f64(),
        f.as_secs_f64() / l.as_secs_f64(),
        (p + f).as_secs_f64() / (s + l).as_secs_f64()
    );

    // A new image on three nodes.
    let reference = "admin/bench:three";
    let (digest, _, _) = push(&svc, reference, seed0 ^ 0xabcdef).await;
    let (first, all) = run(&a, slice_of("three", reference, 1), 3).await;
    println!(
        "new image on 3 nodes (one shared engine): first sliver running after {:.2} s, all three after {:.2} s",
        first.as_secs_f64(),
        all.as_secs_f64()
    );
    delete(&a, "three").await;
    let _ = d
        .remove_image(
            &format!("slicebed/store:{}", &digest[7..]),
            None::<RemoveImageOptions>,
            None,
        )
        .await;
    drop(nms);
}
