//! A `/metrics` endpoint for Prometheus: `GET|HEAD /metrics` only, the OpenMetrics text when the
//! scraper asks for it (Prometheus does) and the classic text format otherwise, which every
//! tool reads. It carries no secrets and no per-user data, but is not authenticated: bind it
//! where only the monitoring system reaches (loopback or a management network).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::Caps;

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrape connections open at once, and their limits: scrapers reconnect.
const CAPS: Caps = Caps {
    name: "metrics",
    max_connections: 16,
    header_timeout: Duration::from_secs(10),
    max_life: Duration::from_secs(120),
};

/// Whether the scraper asked for OpenMetrics.
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The answer to `req`: `render(openmetrics)` for a scrape, 404 or 405 for anything else.
pub async fn answer<B, R, F>(req: Request<B>, render: R) -> Response<Full<Bytes>>
where
    R: FnOnce(bool) -> F,
    F: Future<Output = String>,
{
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
    let mut r = Response::new(Full::new(Bytes::from(render(openmetrics).await)));
    let ctype = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Binds `addr`, writes the bound address to `addr_file` (for port 0) and serves `/metrics`
/// with `render` in a task; abort the handle to stop.
pub async fn start<R, F>(
    addr: &str,
    addr_file: &Path,
    render: R,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    R: Fn(bool) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let listener = crate::bind(addr, "metrics").await?;
    crate::announce(&listener, addr_file, "metrics", "/metrics")?;
    Ok(tokio::spawn(crate::serve(listener, CAPS, move |req| {
        let render = render.clone();
        async move { answer(req, render).await }
    })))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn ask(method: Method, path: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let r = answer(req.body(()).unwrap(), |om| async move {
            format!("# rendered openmetrics={om}\n")
        })
        .await;
        let ctype = r
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn scrapes_get_the_format_they_ask_for_and_nothing_else_is_served() {
        let (s, ct, body) = ask(Method::GET, "/metrics", None).await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, PROMETHEUS_TEXT));
        assert_eq!(body, "# rendered openmetrics=false\n");
        let prom = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        let (s, ct, body) = ask(Method::GET, "/metrics", Some(prom)).await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, OPENMETRICS));
        assert_eq!(body, "# rendered openmetrics=true\n");
        assert_eq!(ask(Method::GET, "/", None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            ask(Method::POST, "/metrics", None).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
