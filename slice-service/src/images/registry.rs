//! The image store served read-only over the OCI Distribution API, so standard clients
//! (docker, containerd, skopeo) and Kubernetes sites pull the same digests nodes run:
//! `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag-or-digest>`, `GET|HEAD
//! /v2/<name>/blobs/<digest>`. Plain HTTP on its own listener (loopback unless `insecure`; TLS
//! by a reverse proxy in production). Credentials: a user token as `Bearer` or as the password
//! of `Basic`; a slice's pull credential (`pull.rs`), which opens that slice's pinned image
//! only; anonymous callers read public images only. It never writes anything.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncReadExt;

use super::pull::PullIssuer;
use super::registry_auth::{secret, Caller, ANONYMOUS_TOKEN};
use crate::core::Core;
use crate::error::Error;
use crate::listener::ConnLimits;

/// File the bound address is written to.
pub const ADDR_FILE: &str = "registry.addr";

/// Longest life of one connection: room for a large layer over a slow link (a client that is
/// cut off pulls the blob again), but nobody holds a socket for free.
const MAX_LIFE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Binds `addr` and serves the registry until the returned task is aborted.
pub async fn start(
    addr: &str,
    insecure: bool,
    data_dir: &Path,
    advertise: Option<&str>,
    core: Arc<Core>,
    limits: ConnLimits,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = slicebed_http::bind(addr, "registry").await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() && !insecure {
        anyhow::bail!(
            "registry: {addr} is not a loopback address and the registry is plain HTTP (tokens \
             would cross the network in clear): serve it on loopback behind a TLS reverse proxy, \
             or pass --insecure if such a proxy is in front"
        );
    }
    let advertised = match advertise {
        Some(a) => checked_advertise(a)?,
        None => bound.to_string(),
    };
    core.set_pull_issuer(PullIssuer::load_or_create(data_dir, advertised.clone())?);
    slicebed_http::announce(
        &listener,
        &data_dir.join(ADDR_FILE),
        "the image store read-only",
        "/v2/",
    )?;
    tracing::info!(%advertised, "clusters are told to pull from {advertised}");
    let caps = slicebed_http::Caps {
        name: "registry",
        max_connections: limits.max_connections,
        header_timeout: limits.first_request_timeout,
        max_life: MAX_LIFE,
    };
    Ok(tokio::spawn(slicebed_http::serve(
        listener,
        caps,
        move |req| {
            let core = core.clone();
            async move { route(&core, req).await }
        },
    )))
}

/// `[registry] advertise` as clusters will use it in image references: `host[:port]`, no
/// scheme, path or spaces.
fn checked_advertise(a: &str) -> anyhow::Result<String> {
    let ok = !a.is_empty()
        && !a.contains("://")
        && !a.contains('/')
        && !a.contains('@')
        && a.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        anyhow::bail!(
            "registry.advertise {a:?}: expected host or host:port as cluster nodes reach the \
             registry (no scheme, path or spaces), e.g. \"registry.example.org:443\""
        );
    }
    Ok(a.to_string())
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn reply(status: StatusCode, ctype: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// An OCI error answer.
fn error(status: StatusCode, code: &str, msg: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": msg}]}).to_string();
    reply(status, "application/json", full(body))
}

/// Adds to a 401 the challenge that sends clients to `/token` on the host they called.
fn challenge(mut r: Response<Body>, host: &str) -> Response<Body> {
    if r.status() == StatusCode::UNAUTHORIZED {
        let v = format!("Bearer realm=\"http://{host}/token\",service=\"slicebed\"");
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

fn from_domain(e: Error, anonymous: bool, code: &str) -> Response<Body> {
    match e {
        Error::NotFound { .. } if anonymous => error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        ),
        Error::NotFound { .. } => error(StatusCode::NOT_FOUND, code, &e.to_string()),
        Error::Invalid(m) => error(StatusCode::BAD_REQUEST, "NAME_INVALID", &m),
        Error::Unauthenticated(m) => error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &m),
        Error::Denied(m) => error(StatusCode::FORBIDDEN, "DENIED", &m),
        other => {
            tracing::error!(error = %other, "registry: internal error");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "internal error (see the service log)",
            )
        }
    }
}

async fn route(core: &Core, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost")
        .to_string();
    challenge(answer(core, req).await, &host)
}

async fn answer(core: &Core, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only",
            )
        }
    };
    let anonymous_bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().ends_with(ANONYMOUS_TOKEN));
    let secret = secret(&req);
    let caller = match Caller::of(core, secret.as_deref()).await {
        Ok(c) => c,
        Err(e) => return from_domain(e, false, "UNAUTHORIZED"),
    };
    let path = req.uri().path().to_string();
    if path == "/token" {
        // The caller's own token back (checked above), or the anonymous one.
        let token = secret
            .filter(|_| !matches!(caller, Caller::User(None)))
            .unwrap_or_else(|| ANONYMOUS_TOKEN.into());
        let body = serde_json::json!({"token": token, "access_token": token}).to_string();
        return reply(StatusCode::OK, "application/json", full(body));
    }
    if path == "/v2/" || path == "/v2" {
        // A caller without a token is sent to /token first, so docker sends its `docker
        // login` credentials there, or pulls public images with the anonymous token.
        if matches!(caller, Caller::User(None)) && !anonymous_bearer {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "get a token at /token (user token as the password, or none for public images)",
            );
        }
        return reply(StatusCode::OK, "application/json", full("{}"));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not an OCI Distribution path",
        );
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return manifest(core, &caller, name, reference, head).await;
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return blob(core, &caller, name, digest, head).await;
    }
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "not an OCI Distribution path",
    )
}

async fn manifest(
    core: &Core,
    who: &Caller,
    name: &str,
    reference: &str,
    head: bool,
) -> Response<Body> {
    let found = match who {
        Caller::User(u) => core.registry_manifest(u.as_ref(), name, reference).await,
        Caller::Pull(scope) => core.pull_manifest(scope, name, reference).await,
    };
    match found {
        Ok((d, bytes)) => {
            let len = bytes.len();
            let mut r = reply(
                StatusCode::OK,
                slicebed_image::MANIFEST_MEDIA_TYPE,
                if head {
                    full(Bytes::new())
                } else {
                    full(bytes)
                },
            );
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(
                "docker-content-digest",
                HeaderValue::from_str(d.as_str()).expect("a digest is a valid header"),
            );
            r
        }
        Err(e) => from_domain(e, who.anonymous(), "MANIFEST_UNKNOWN"),
    }
}

async fn blob(core: &Core, who: &Caller, name: &str, digest: &str, head: bool) -> Response<Body> {
    let allowed = match who {
        Caller::User(u) => core.registry_blob(u.as_ref(), name, digest).await,
        Caller::Pull(scope) => core.pull_blob(scope, name, digest).await,
    };
    let d = match allowed {
        Ok(d) => d,
        Err(e) => return from_domain(e, who.anonymous(), "BLOB_UNKNOWN"),
    };
    let opened = match core.blob_dir() {
        Ok(dir) => dir.open_blob(&d).await,
        Err(e) => Err(e),
    };
    let (file, size) = match opened {
        Ok(Some(f)) => f,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob not in the store",
            )
        }
        Err(e) => return from_domain(e, false, "BLOB_UNKNOWN"),
    };
    let body = if head {
        full(Bytes::new())
    } else {
        // Streamed in 1 MiB chunks, never read whole.
        // A read error ends the body (the client sees a short blob and refuses it by digest).
        let chunks = futures::stream::unfold(Some(file), |f| async move {
            let mut f = f?;
            let mut buf = vec![0u8; slicebed_image::CHUNK_BYTES];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        StreamBody::new(chunks).boxed_unsync()
    };
    let mut r = reply(StatusCode::OK, "application/octet-stream", body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        "docker-content-digest",
        HeaderValue::from_str(d.as_str()).expect("a digest is a valid header"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::checked_advertise;

    #[test]
    fn the_advertised_address_is_a_host_and_port() {
        assert_eq!(
            checked_advertise("reg.example:443").unwrap(),
            "reg.example:443"
        );
        assert_eq!(checked_advertise("10.0.0.5").unwrap(), "10.0.0.5");
        for bad in [
            "",
            "https://reg.example",
            "reg.example/v2",
            "a b:1",
            "u@reg:1",
        ] {
            let e = checked_advertise(bad).unwrap_err().to_string();
            assert!(e.contains("registry.advertise"), "{bad}: {e}");
        }
    }
}
