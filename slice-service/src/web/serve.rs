//! Accepting the status page's connections under caps, so that nobody can hold its sockets
//! for free: at most `max_connections` open (more are closed as soon as they are accepted, as
//! on the gRPC listener), a request's headers must arrive within `first_request_timeout` of
//! the connection opening or of the previous answer (hyper arms that timer whenever it waits
//! for a request, so idle kept-alive connections close too), and no connection lives longer
//! than `MAX_LIFE` (a browser reconnects; the events stream resumes where it was). Connection tasks belong to the serving task, so aborting it closes them all.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{reply, router, Web};
use crate::listener::ConnLimits;

/// Longest life of one connection, whatever it does.
const MAX_LIFE: Duration = Duration::from_secs(15 * 60);

/// Serves the status page on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, web: Arc<Web>, limits: ConnLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
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
                tracing::warn!(error = %e, "web: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if told.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    limit = limits.max_connections,
                    "web: too many open connections; closing new ones"
                );
                told = Some(tokio::time::Instant::now());
            }
            continue;
        };
        let _ = io.set_nodelay(true);
        let web = web.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let web = web.clone();
                async move {
                    let mut r = router::route(&web, req).await;
                    reply::secure(&mut r);
                    Ok::<_, Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.first_request_timeout)
                .serve_connection(TokioIo::new(io), svc);
            let _ = tokio::time::timeout(MAX_LIFE, conn).await;
            drop(slot);
        });
    }
}
