//! `slicectl logs SLICE[/INDEX] [-f] [--tail N]`: the container log of one sliver, or of every
//! sliver with each line prefixed by its sliver; `-f` keeps following until Ctrl-C.

use std::{cell::RefCell, io::IsTerminal, io::Write};

use anyhow::Result;
use clap::Args;
use futures::future::join_all;
use slicebed_proto::v1::{logs_response::Msg, LogsRequest, LogsResponse};

use super::{
    lines::{Lines, Stream},
    parse_slice_index, select, Sliver,
};
use crate::{client::Clients, ctx::Ctx, errors::Exit};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A slice (all its slivers) or one sliver, e.g. demo or demo/0
    #[arg(value_name = "SLICE[/INDEX]", value_parser = parse_slice_index)]
    pub target: (String, Option<u32>),
    /// Keep printing new lines until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each sliver
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

pub async fn run(args: LogsArgs, ctx: &Ctx) -> Result<()> {
    let clients = ctx.connect().await?;
    let (slice, index) = args.target;
    let indexes: Vec<u32> = index.into_iter().collect();
    let slivers = select(&clients, &slice, &indexes, &[]).await?;
    let labels: Vec<String> = slivers.iter().map(Sliver::label).collect();
    let lines = RefCell::new(Lines::new(
        (slivers.len() > 1).then_some(labels.as_slice()),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ));
    let req = |v: &Sliver| LogsRequest {
        sliver: Some(v.to_ref()),
        follow: args.follow,
        tail: args.tail.unwrap_or(0),
    };
    let all = join_all(
        slivers
            .iter()
            .enumerate()
            .map(|(slot, v)| logs_one(&clients, req(v), slot, &lines)),
    );
    let results = if args.follow {
        tokio::select! {
            r = all => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    } else {
        Some(all.await)
    };
    let mut lines = lines.into_inner();
    for slot in 0..slivers.len() {
        for stream in [Stream::Stdout, Stream::Stderr] {
            write(stream, &lines.finish(slot, stream));
        }
    }
    // Ctrl-C is how `-f` ends; that is success.
    let Some(results) = results else {
        return Ok(());
    };
    let mut failed = false;
    for (v, r) in slivers.iter().zip(results) {
        match r {
            Ok(()) => {}
            Err(e) if slivers.len() == 1 => return Err(e),
            Err(e) => {
                failed = true;
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
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

async fn logs_one(
    clients: &Clients,
    req: LogsRequest,
    slot: usize,
    lines: &RefCell<Lines>,
) -> Result<()> {
    let mut stream = clients.access.clone().logs(req).await?.into_inner();
    while let Some(LogsResponse { msg }) = stream.message().await? {
        let (stream, data) = match msg {
            Some(Msg::Stdout(b)) => (Stream::Stdout, b),
            Some(Msg::Stderr(b)) => (Stream::Stderr, b),
            None => continue,
        };
        let bytes = lines.borrow_mut().push(slot, stream, &data);
        write(stream, &bytes);
    }
    Ok(())
}

fn write(stream: Stream, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let result = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|_| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
    // `slicectl logs x | head` ends quietly.
    if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
        std::process::exit(0);
    }
}
