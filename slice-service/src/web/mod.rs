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
mod serve;
mod sparkline;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::core::Core;
use crate::limits::StreamLimits;
use crate::listener::ConnLimits;

/// The file in the data directory that holds the bound address (for port 0).
pub const ADDR_FILE: &str = "web.addr";

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
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("web: listening on {addr}"))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() && !insecure {
        anyhow::bail!(
            "web: {addr} is not a loopback address, and the status page is plain HTTP \
             (tokens would cross the network in clear): serve it on loopback behind a TLS \
             reverse proxy, or pass --insecure if such a proxy is in front"
        );
    }
    let file = data_dir.join(ADDR_FILE);
    std::fs::write(&file, bound.to_string())
        .with_context(|| format!("writing {}", file.display()))?;
    tracing::info!(addr = %bound, "serving the status page on http://{bound}/");
    let web = Arc::new(Web {
        core,
        streams,
        overview: Default::default(),
    });
    Ok(tokio::spawn(serve::serve(listener, web, limits)))
}
