//! The `/metrics` listener (`slicebed_http::metrics`: plain HTTP/1.1, `GET /metrics` only). It
//! carries no secrets and no per-user data, but bind it where only the monitoring system
//! reaches (loopback or a management network): it is not authenticated.

use std::sync::Arc;

use super::{Metrics, Sources};

/// Binds `addr`, writes the bound address to `<data_dir>/metrics.addr` (for port 0) and serves
/// `/metrics` in a task; abort the handle to stop.
pub async fn start(
    addr: &str,
    data_dir: &std::path::Path,
    metrics: Arc<Metrics>,
    src: Sources,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    slicebed_http::metrics::start(addr, &data_dir.join("metrics.addr"), move |openmetrics| {
        let (metrics, src) = (metrics.clone(), src.clone());
        async move { metrics.render(&src, openmetrics).await }
    })
    .await
}
