//! A container's log from the engine (stdout and stderr), the last N lines or all, following
//! if asked, as the node manager's [`Output`] chunks.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::connect::engine_message;
use super::DockerRuntime;
use crate::runtime::{LogsSpec, Output, Result, RuntimeError};

/// The engine's `tail` for a request: `None` means all.
pub fn tail(n: Option<u32>) -> String {
    n.map_or_else(|| "all".to_string(), |n| n.to_string())
}

impl DockerRuntime {
    pub(super) fn container_logs(
        &self,
        container_id: &str,
        spec: LogsSpec,
    ) -> BoxStream<'static, Result<Output>> {
        let opts = LogsOptions {
            follow: spec.follow,
            stdout: true,
            stderr: true,
            tail: tail(spec.tail),
            ..Default::default()
        };
        self.docker
            .logs(container_id, Some(opts))
            .filter_map(|item| async move {
                match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Ok(Output::Stdout(message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(RuntimeError::Engine {
                        op: "read the log".into(),
                        message: engine_message(&e),
                    })),
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_tail_means_all() {
        assert_eq!(super::tail(None), "all");
        assert_eq!(super::tail(Some(25)), "25");
    }
}
