//! The web status page (`--web-listen ADDR`, `[web] listen`): a public overview of the testbed
//! (sites on a world map, nodes and their states, utilization) and, for whoever enters a user
//! token, their slices with slivers and a live event stream.
//!
//! Pages are rendered on the server (`pages`, `map`, `mine`); a small script and style sheet
//! are embedded (`assets`). Who may see what is decided by the core, as for the gRPC API: the
//! page authenticates with the same code and lists with the same visibility rule. The public
//! part must never show a slice, a user or a sliver; every text from users and nodes is
//! escaped (`html`); every answer carries a Content-Security-Policy that allows no inline
//! script (`reply`). It speaks plain HTTP: off loopback it needs `--insecure`, and belongs
//! behind a TLS reverse proxy (docs/operations.md).

mod assets;
mod auth;
mod events;
mod html;
mod map;
mod mine;
mod overview;
mod pages;
mod reply;
mod router;
mod sparkline;

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use crate::core::Core;
use crate::limits::StreamLimits;
use crate::listener::ConnLimits;

/// The file in the data directory that holds the bound address (for port 0).
pub const ADDR_FILE: &str = "web.addr";

/// Longest life of one connection, whatever it does (a browser reconnects; the events stream
/// resumes where it was).
const MAX_LIFE: Duration = Duration::from_secs(15 * 60);

/// What the page's handlers share.
#[derive(Debug)]
pub struct Web {
    core: Arc<Core>,
    /// The same per-user stream caps as the gRPC API's watches.
    streams: StreamLimits,
    overview: overview::Cached,
}

/// Binds `addr`, writes the bound address to `<data_dir>/web.addr` and serves the status page
/// in a task; abort the handle to stop it (its connections close with it).
pub async fn start(
    addr: &str,
    insecure: bool,
    data_dir: &Path,
    core: Arc<Core>,
    streams: StreamLimits,
    limits: ConnLimits,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = slicebed_http::bind(addr, "web").await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() && !insecure {
        anyhow::bail!(
            "web: {addr} is not a loopback address, and the status page is plain HTTP \
             (tokens would cross the network in clear): serve it on loopback behind a TLS \
             reverse proxy, or pass --insecure if such a proxy is in front"
        );
    }
    slicebed_http::announce(&listener, &data_dir.join(ADDR_FILE), "the status page", "/")?;
    let web = Arc::new(Web {
        core,
        streams,
        overview: Default::default(),
    });
    let caps = slicebed_http::Caps {
        name: "web",
        max_connections: limits.max_connections,
        header_timeout: limits.first_request_timeout,
        max_life: MAX_LIFE,
    };
    Ok(tokio::spawn(slicebed_http::serve(
        listener,
        caps,
        move |req| {
            let web = web.clone();
            async move {
                let mut r = router::route(&web, req).await;
                reply::secure(&mut r);
                r
            }
        },
    )))
}
