//! `slicectl cp LOCAL SLICE[/INDEX]:DIR` uploads a file or directory into every sliver of a slice
//! (or one), concurrently; `slicectl cp SLICE/INDEX:PATH LOCAL` downloads one. Both directions
//! stream tar through bounded channels (see `tarstream`), so the size of a copy is limited by
//! disks, not by memory. Throughput is reported on stderr at the end.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use futures::{future::join_all, StreamExt};
use slicebed_proto::v1::{copy_to_request, CopyFromRequest, CopyToRequest, CopyToStart};

use super::{
    select,
    target::Location,
    tarstream::{self, ChunkReader},
    Sliver,
};
use crate::{
    client::Clients,
    ctx::Ctx,
    errors::{status_line, Exit},
};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    slicectl cp ./conf exp:/etc/app        # into every sliver of exp\n  \
    slicectl cp run.sh exp/2:/tmp          # into sliver 2 only\n  \
    slicectl cp exp/0:/data/results ./r0   # download a directory")]
pub struct CpArgs {
    /// What to copy: a local file or directory, or SLICE/INDEX:PATH
    #[arg(value_name = "SOURCE")]
    pub src: String,
    /// Where to: SLICE:DIR (every sliver), SLICE/INDEX:DIR, or a local path
    #[arg(value_name = "DEST")]
    pub dst: String,
}

pub async fn run(args: CpArgs, ctx: &Ctx) -> Result<()> {
    match (Location::parse(&args.src), Location::parse(&args.dst)) {
        (Location::Local(local), Location::Remote { slice, index, path }) => {
            upload(ctx, &local, &slice, index, &remote_path(&path, &slice)?).await
        }
        (Location::Remote { slice, index, path }, Location::Local(local)) => {
            let Some(index) = index else {
                bail!("download from one sliver: name it as {slice}/INDEX:{path}");
            };
            download(ctx, &slice, index, &remote_path(&path, &slice)?, &local).await
        }
        (Location::Local(_), Location::Local(_)) => {
            bail!("one side must be in a slice: SLICE:PATH or SLICE/INDEX:PATH")
        }
        (Location::Remote { .. }, Location::Remote { .. }) => {
            bail!("cannot copy between slivers directly; download, then upload")
        }
    }
}

fn remote_path(path: &str, slice: &str) -> Result<String> {
    if path.is_empty() {
        bail!("give a path in the sliver, e.g. {slice}:/tmp");
    }
    if !path.starts_with('/') {
        bail!("the path in the sliver must be absolute, got {path:?}");
    }
    Ok(path.to_string())
}

async fn upload(ctx: &Ctx, local: &Path, slice: &str, index: Option<u32>, dir: &str) -> Result<()> {
    std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    let clients = ctx.connect().await?;
    let indexes: Vec<u32> = index.into_iter().collect();
    let slivers = select(&clients, slice, &indexes, &[]).await?;
    let started = Instant::now();
    let results = join_all(slivers.iter().map(|v| upload_one(&clients, v, local, dir))).await;
    let elapsed = started.elapsed();
    let (mut total, mut each, mut failed) = (0, 0, 0);
    for (v, r) in slivers.iter().zip(results) {
        match r {
            Ok(n) => {
                total += n;
                each = each.max(n);
            }
            Err(e) if slivers.len() == 1 => return Err(e),
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: sliver {}/{} ({}/{}): {}",
                    v.slice,
                    v.index,
                    v.node,
                    v.site,
                    crate::errors::describe(&e)
                );
            }
        }
    }
    let done = slivers.len() - failed;
    let to = match slivers.len() {
        1 => String::new(),
        n if failed == 0 => format!(" to {n} slivers"),
        n => format!(" to {done} of {n} slivers"),
    };
    // The size is that of one copy; the rate counts every byte sent.
    eprintln!(
        "copied {}{to} in {}",
        human_bytes(each),
        rate(total, elapsed)
    );
    if failed > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// One upload; returns the archive's size. The archive is written by a blocking task; if it fails
/// (a file vanished, a permission), the call is dropped before its end, so the sliver never sees a
/// truncated archive as a whole one.
async fn upload_one(clients: &Clients, v: &Sliver, local: &Path, dir: &str) -> Result<u64> {
    let (tx, rx) = tarstream::channel();
    let source = local.to_path_buf();
    let mut producer = tokio::task::spawn_blocking(move || tarstream::build(&source, tx));
    let start = CopyToRequest {
        msg: Some(copy_to_request::Msg::Start(CopyToStart {
            sliver: Some(v.to_ref()),
            path: dir.to_string(),
        })),
    };
    let data = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Ok(chunk)) => {
                let m = CopyToRequest {
                    msg: Some(copy_to_request::Msg::Data(chunk)),
                };
                Some((m, rx))
            }
            // The producer failed: keep the request open until the call is dropped.
            Some(Err(_)) => std::future::pending().await,
            None => None,
        }
    });
    let requests = futures::stream::iter([start]).chain(data);
    let mut access = clients.access.clone();
    let call = access.copy_to(requests);
    tokio::pin!(call);
    let reading = || format!("cannot read {}", local.display());
    tokio::select! {
        answer = &mut call => {
            answer?;
            // The service answers after the last byte, so the producer is done by now.
            let sent = producer.await.context("the archive writer stopped")?.with_context(reading)?;
            Ok(sent)
        }
        produced = &mut producer => {
            let sent = produced.context("the archive writer stopped")?.with_context(reading)?;
            call.await?;
            Ok(sent)
        }
    }
}

async fn download(ctx: &Ctx, slice: &str, index: u32, path: &str, local: &Path) -> Result<()> {
    tarstream::check_dest(local).with_context(|| format!("cannot write {}", local.display()))?;
    let clients = ctx.connect().await?;
    let started = Instant::now();
    let mut stream = clients
        .access
        .clone()
        .copy_from(CopyFromRequest {
            sliver: Some(slicebed_proto::v1::SliverRef {
                slice: slice.into(),
                index,
            }),
            path: path.into(),
        })
        .await
        .with_context(|| format!("cannot download {slice}/{index}:{path}"))?
        .into_inner();
    let (tx, rx) = tarstream::channel();
    let dest: PathBuf = local.to_path_buf();
    let extractor =
        tokio::task::spawn_blocking(move || tarstream::extract(ChunkReader::new(rx), &dest));
    let mut received = 0u64;
    let mut broken = None;
    loop {
        match stream.message().await {
            Ok(Some(m)) => {
                received += m.data.len() as u64;
                // A closed channel means the extractor is done (end of archive) or failed;
                // either way its result says which.
                if tx.send(Ok(m.data)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(s) => {
                let _ = tx.send(Err(std::io::Error::other(status_line(&s)))).await;
                broken = Some(s);
                break;
            }
        }
    }
    drop(tx);
    let extracted = extractor.await.context("the extractor stopped")?;
    if let Some(s) = broken {
        return Err(s).with_context(|| format!("cannot download {slice}/{index}:{path}"));
    }
    extracted.with_context(|| format!("cannot write {}", local.display()))?;
    eprintln!(
        "copied {} in {}",
        human_bytes(received),
        rate(received, started.elapsed())
    );
    Ok(())
}

/// `100.0 MiB`, `12.5 KiB`, `300 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `1.2s (83 MiB/s)`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let per_sec = (bytes as f64 / secs) as u64;
    let speed = human_bytes(per_sec);
    // Whole units read better for a speed: "83 MiB/s", not "83.4 MiB/s".
    let speed = match speed.split_once('.') {
        Some((whole, rest)) => format!("{whole}{}", &rest[1..]),
        None => speed,
    };
    format!("{:.1}s ({speed}/s)", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_read_well() {
        assert_eq!(human_bytes(300), "300 B");
        assert_eq!(human_bytes(100 << 20), "100.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(
            rate(100 << 20, Duration::from_millis(1200)),
            "1.2s (83 MiB/s)"
        );
        assert_eq!(rate(0, Duration::ZERO), "0.0s (0 B/s)");
    }

    #[test]
    fn remote_paths_must_be_absolute() {
        assert!(remote_path("/tmp", "x").is_ok());
        assert!(remote_path("tmp", "x")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(remote_path("", "x")
            .unwrap_err()
            .to_string()
            .contains("x:/tmp"));
    }
}
