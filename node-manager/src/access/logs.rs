//! Logs sessions: the sliver container's log (stdout and stderr), the last N lines or all,
//! following if asked, until the log ends, the container stops (when following), the client
//! goes away or the session idles out.

use futures::StreamExt;
use slicebed_proto::v1::{LogsRequest, SessionEnd};

use super::stream::{failed, Gone, Outbound, Session};
use super::target;
use crate::runtime::{LogsSpec, Output, Result, Runtime};

/// The part of the log a request asks for: a tail of 0 means all of it.
pub fn spec(req: &LogsRequest) -> LogsSpec {
    LogsSpec {
        tail: (req.tail != 0).then_some(req.tail),
        follow: req.follow,
    }
}

/// Runs one logs session to its end.
pub async fn run(rt: &impl Runtime, sliver_id: &str, req: LogsRequest, mut s: Session) {
    let t = match target::find(rt, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    let log = rt.logs(&t.container_id, spec(&req));
    let end = tokio::select! {
        r = relay(log, &s.out) => match r {
            Ok(()) => SessionEnd::default(),
            Err(Relay::Gone) => return,
            Err(Relay::Engine(m)) => failed(m),
        },
        _ = s.inbound.closed() => return,
        _ = s.idle.expired() => failed("idle timeout"),
    };
    s.finish(end).await;
}

enum Relay {
    Gone,
    Engine(String),
}

async fn relay(
    mut log: impl futures::Stream<Item = Result<Output>> + Unpin,
    out: &Outbound,
) -> Result<(), Relay> {
    while let Some(item) = log.next().await {
        let sent = match item {
            Ok(Output::Stdout(b)) => out.stdout(&b).await,
            Ok(Output::Stderr(b)) => out.stderr(&b).await,
            Err(e) => {
                return Err(Relay::Engine(format!(
                    "cannot read the log: {}",
                    e.message()
                )))
            }
        };
        sent.map_err(|_: Gone| Relay::Gone)?;
    }
    Ok(())
}
