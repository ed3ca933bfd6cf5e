//! The one accept loop behind Slicebed's plain HTTP/1.1 side listeners (the status page, the
//! read-only registry, the service's and the node manager's `/metrics`), so every one of them
//! holds the same promises against clients that would hold sockets for free:
//!
//! - at most [`Caps::max_connections`] open; more are closed as soon as they are accepted (as
//!   on the gRPC listener), with a warning at most once a minute;
//! - a request's headers must arrive within [`Caps::header_timeout`] of the connection opening
//!   or of the previous answer (hyper arms that timer whenever it waits for a request, so idle
//!   kept-alive connections close too);
//! - no connection lives longer than [`Caps::max_life`], whatever it does;
//! - connection tasks belong to the serving task: aborting it closes them all.

pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Names the listener in log lines ("web", "metrics", "registry").
    pub name: &'static str,
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers.
    pub header_timeout: Duration,
    /// Longest life of one connection.
    pub max_life: Duration,
}

/// Binds `addr`, naming `what` in the error.
pub async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: listening on {addr}"))
}

/// Writes the bound address of `listener` (useful with port 0) to `addr_file`, and logs `what`
/// at `http://ADDR{path}`.
pub fn announce(
    listener: &TcpListener,
    addr_file: &Path,
    what: &str,
    path: &str,
) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::fs::write(addr_file, bound.to_string())
        .with_context(|| format!("writing {}", addr_file.display()))?;
    tracing::info!(addr = %bound, "serving {what} on http://{bound}{path}");
    Ok(bound)
}

/// Serves `handler` on `listener` under `caps` until the task is aborted.
pub async fn serve<H, F, B>(listener: TcpListener, caps: Caps, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(caps.max_connections.max(1)));
    let mut conns = JoinSet::new();
    let mut told: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connections as they end, so the set stays as small as what is open.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let io = match accepted {
            Ok((io, _)) => io,
            Err(e) => {
                tracing::warn!(listener = caps.name, error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if told.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    listener = caps.name,
                    limit = caps.max_connections,
                    "too many open connections; closing new ones"
                );
                told = Some(tokio::time::Instant::now());
            }
            continue;
        };
        let _ = io.set_nodelay(true);
        let handler = handler.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(caps.header_timeout)
                .serve_connection(TokioIo::new(io), svc);
            let _ = tokio::time::timeout(caps.max_life, conn).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests;
