//! `bench_access`: researcher access through slice-service against the Docker engine alone.
//!
//! 1. Exec round trip (`true` in a running sliver): AccessService/Exec through the service and
//!    the node's session stream, against create+start+inspect of a Docker exec through the same
//!    engine (bollard). Median of N runs each, and the ratio.
//! 2. Copy throughput of a 100 MiB file (as a tar stream) into and out of the sliver:
//!    AccessService/CopyTo and CopyFrom against Docker's archive API (what `docker cp` uses).
//!
//! Usage: `SLICEBED_BIN_DIR=target/release target/release/bench_access [N]`.

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    DownloadFromContainerOptions, ListContainersOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::access_service_client::AccessServiceClient;
use slicebed_tests::client::{channel, Bearer};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};

const MIB: f64 = (1 << 20) as f64;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tar_of(size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    b.append_data(&mut h, "big.bin", data.as_slice()).unwrap();
    b.into_inner().unwrap()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    a.admin
        .clone()
        .create_site(pb::CreateSiteRequest {
            site: Some(pb::Site {
                name: "mit".into(),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let nm = NodeManager::start(&svc, "mit", &unique("acc")).await;
    let req = pb::CreateSliceRequest {
        name: "acc".into(),
        image: "slicebed/base:latest".into(),
        command: vec!["sleep".into(), "3600".into()],
        resources: Some(pb::Resources {
            cpu_millis: 1000,
            memory_bytes: 256 << 20,
            disk_bytes: 2 << 30,
        }),
        placement: Some(pb::PlacementRequest {
            slivers: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    wait_for("node ready", Duration::from_secs(30), || {
        let a = a.clone();
        let req = req.clone();
        async move { a.slices.clone().create_slice(req).await.ok().map(|_| ()) }
    })
    .await;
    wait_for("sliver running", Duration::from_secs(60), || {
        let a = a.clone();
        async move {
            let s = a
                .slices
                .clone()
                .get_slice(pb::GetSliceRequest { name: "acc".into() })
                .await
                .ok()?
                .into_inner();
            (s.slivers[0].state == pb::SliverState::Running as i32).then_some(())
        }
    })
    .await;
    let d = Docker::connect_with_local_defaults().unwrap();
    let cid = {
        let mut f = std::collections::HashMap::new();
        f.insert(
            "label".to_string(),
            vec![format!("slicebed.node={}", nm.name)],
        );
        let l = d
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(f),
                ..Default::default()
            }))
            .await
            .unwrap();
        l[0].id.clone().unwrap()
    };
    let mut acc = AccessServiceClient::with_interceptor(
        channel(&svc).await,
        Bearer::new(&svc.admin_token).expect("token"),
    )
    .max_decoding_message_size(8 << 20);
    let sliver = Some(pb::SliverRef {
        slice: "acc".into(),
        index: 0,
    });

    // Exec round trips.
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..n + 2 {
        let t = Instant::now();
        let start = pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
                sliver: sliver.clone(),
                command: vec!["true".into()],
                ..Default::default()
            })),
        };
        let mut s = acc
            .exec(tokio_stream::iter(vec![start]))
            .await
            .unwrap()
            .into_inner();
        while let Some(m) = s.message().await.unwrap() {
            if let Some(pb::exec_response::Msg::Exit(e)) = m.msg {
                assert_eq!(e.code, 0, "{}", e.message);
            }
        }
        ours.push(t.elapsed());

        let t = Instant::now();
        let ex = d
            .create_exec(
                &cid,
                CreateExecOptions::<String> {
                    cmd: Some(vec!["true".into()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if let StartExecResults::Attached { mut output, .. } =
            d.start_exec(&ex.id, None).await.unwrap()
        {
            while output.next().await.is_some() {}
        }
        let code = d.inspect_exec(&ex.id).await.unwrap().exit_code;
        assert_eq!(code, Some(0));
        raw.push(t.elapsed());
    }
    let (o, r) = (median(ours.split_off(2)), median(raw.split_off(2)));
    println!("exec round trip (`true`, median of {n}):");
    println!(
        "  slicebed AccessService/Exec: {:.1} ms",
        o.as_secs_f64() * 1000.0
    );
    println!(
        "  docker exec (API):           {:.1} ms",
        r.as_secs_f64() * 1000.0
    );
    println!("  ratio: {:.2}x", o.as_secs_f64() / r.as_secs_f64());

    // Copy throughput, 100 MiB.
    let archive = tar_of(100 << 20);
    let mb = archive.len() as f64 / MIB;
    let t = Instant::now();
    let mut msgs = vec![pb::CopyToRequest {
        msg: Some(pb::copy_to_request::Msg::Start(pb::CopyToStart {
            sliver: sliver.clone(),
            path: "/tmp".into(),
        })),
    }];
    for c in archive.chunks(256 << 10) {
        msgs.push(pb::CopyToRequest {
            msg: Some(pb::copy_to_request::Msg::Data(c.to_vec())),
        });
    }
    acc.copy_to(tokio_stream::iter(msgs)).await.unwrap();
    let up_ours = mb / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut s = acc
        .copy_from(pb::CopyFromRequest {
            sliver: sliver.clone(),
            path: "/tmp/big.bin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = 0usize;
    while let Some(m) = s.message().await.unwrap() {
        got += m.data.len();
    }
    let down_ours = got as f64 / MIB / t.elapsed().as_secs_f64();

    let t = Instant::now();
    d.upload_to_container(
        &cid,
        Some(UploadToContainerOptions {
            path: "/root".to_string(),
            ..Default::default()
        }),
        bollard::body_full(archive.clone().into()),
    )
    .await
    .unwrap();
    let up_raw = mb / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut s = d.download_from_container(
        &cid,
        Some(DownloadFromContainerOptions {
            path: "/root/big.bin".to_string(),
        }),
    );
    let mut got2 = 0usize;
    while let Some(c) = s.next().await {
        got2 += c.unwrap().len();
    }
    let down_raw = got2 as f64 / MIB / t.elapsed().as_secs_f64();
    println!("copy of a 100 MiB file (tar stream):");
    println!(
        "  upload:   slicebed {up_ours:.0} MiB/s, docker archive API {up_raw:.0} MiB/s ({:.2}x)",
        up_ours / up_raw
    );
    println!("  download: slicebed {down_ours:.0} MiB/s, docker archive API {down_raw:.0} MiB/s ({:.2}x)", down_ours / down_raw);
}
