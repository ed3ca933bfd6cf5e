//! The `/metrics` listener: plain HTTP/1.1 (hyper, already in the tree through tonic), `GET
//! /metrics` only. It carries no secrets and no per-user data, but bind it where only the
//! monitoring system reaches (loopback or a management network): it is not authenticated.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use super::{Metrics, Sources};

/// Scrape connections open at once; more are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 32;
/// A connection is closed after this, whatever it does (scrapers reconnect).
const CONNECTION_LIFE: Duration = Duration::from_secs(120);

/// The OpenMetrics content type (`prometheus_client::encoding::text`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the scraper asked for OpenMetrics (Prometheus does); otherwise the classic text
/// format, which every tool reads.
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

async fn answer<B>(metrics: &Metrics, src: &Sources, req: Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "only /metrics here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let openmetrics = wants_openmetrics(&req);
    let body = metrics.render(src, openmetrics).await;
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let ctype = if openmetrics {
        OPENMETRICS
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

/// Binds `addr`, writes the bound address to `<data_dir>/metrics.addr` (for port 0) and serves
/// `/metrics` in a task; abort the handle to stop.
pub async fn start(
    addr: &str,
    data_dir: &std::path::Path,
    metrics: Arc<Metrics>,
    src: Sources,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = slicebed_http::bind(addr, "metrics").await?;
    slicebed_http::announce(
        &listener,
        &data_dir.join("metrics.addr"),
        "metrics",
        "/metrics",
    )?;
    let caps = slicebed_http::Caps {
        name: "metrics",
        max_connections: MAX_CONNECTIONS,
        header_timeout: Duration::from_secs(10),
        max_life: CONNECTION_LIFE,
    };
    Ok(tokio::spawn(slicebed_http::serve(
        listener,
        caps,
        move |req| {
            let (metrics, src) = (metrics.clone(), src.clone());
            async move { answer(&metrics, &src, req).await }
        },
    )))
}
