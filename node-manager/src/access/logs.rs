//! Logs sessions: the sliver container's log (stdout and stderr), the last N lines or all,
//! following if asked, until the log ends, the container stops (when following), the client
//! goes away or the session idles out.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures::StreamExt;
use slicebed_proto::v1::{LogsRequest, SessionEnd};

use super::stream::{failed, Gone, Outbound, Session};
use super::{engine_message, target};

/// The engine's `tail` for a request: 0 means all.
pub fn tail(n: u32) -> String {
    if n == 0 {
        "all".to_string()
    } else {
        n.to_string()
    }
}

/// Runs one logs session to its end.
pub async fn run(docker: &Docker, node: &str, sliver_id: &str, req: LogsRequest, mut s: Session) {
    let t = match target::find(docker, node, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    let opts = LogsOptions {
        follow: req.follow,
        stdout: true,
        stderr: true,
        tail: tail(req.tail),
        ..Default::default()
    };
    let log = docker.logs(&t.id, Some(opts));
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
    log: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>>,
    out: &Outbound,
) -> Result<(), Relay> {
    futures::pin_mut!(log);
    while let Some(item) = log.next().await {
        let sent = match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                out.stdout(&message).await
            }
            Ok(LogOutput::StdErr { message }) => out.stderr(&message).await,
            Ok(LogOutput::StdIn { .. }) => Ok(0),
            Err(e) => {
                return Err(Relay::Engine(format!(
                    "cannot read the log: {}",
                    engine_message(&e)
                )))
            }
        };
        sent.map_err(|_: Gone| Relay::Gone)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_zero_means_all() {
        assert_eq!(super::tail(0), "all");
        assert_eq!(super::tail(25), "25");
    }
}
