//! The HTTP(S) front: accepts connections, checks the bearer token, routes, and turns results
//! and [`ApiError`]s into responses. HTTP/1.1 only (watches and log follows are chunked bodies).

mod discovery;
mod docker_logs;
mod logs;
mod resource;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::router::{route, Route};
use crate::state::Shared;
use crate::status::ApiError;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                }
            }
        });
    }
}

pub fn json(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .expect("static response parts are valid")
}

pub fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_status())
}

/// A streamed body from a channel of chunks; it ends when the sender is dropped.
pub fn streamed(content_type: &str, rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("transfer-encoding", "chunked")
        .body(StreamBody::new(stream).boxed_unsync())
        .expect("static response parts are valid")
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let public = matches!(
        path.as_str(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    );
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if !public && !authorized {
        return error(&ApiError::unauthorized());
    }
    match route(&path) {
        Route::Discovery(p) => match discovery::document(&p) {
            Some(doc) => json(200, &doc),
            None => error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        Route::NotFound => error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
        // exec switches the connection to a websocket (hence with_upgrades above).
        Route::Resource {
            kind,
            namespace: Some(ns),
            name: Some(name),
            sub: Some(sub),
        } if kind.plural == "pods" && sub == "exec" => {
            crate::exec::serve(shared, req, ns, name).await
        }
        Route::Resource {
            kind,
            namespace,
            name,
            sub,
        } => {
            let method = req.method().clone();
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(&ApiError::bad_request("could not read the request body")),
            };
            let r = resource::Call {
                kind,
                namespace,
                name,
                sub,
                method,
                query,
                content_type,
                body,
            };
            resource::dispatch(shared, r).await
        }
    }
}
