//! Reaching the Docker engine: the client, API version negotiation, and the one translation of
//! bollard's errors into [`RuntimeError`]. Nothing outside `runtime::docker` sees these types.

use std::path::PathBuf;

use bollard::errors::Error as DockerError;
use bollard::Docker;

use crate::runtime::{Result, RuntimeError};

/// Seconds the engine may take to answer one request (not a stream).
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// The client side of an engine reached over TLS (docker's `--tlscacert`, `--tlscert`,
/// `--tlskey`): the engine's certificate must chain to `ca`, and the engine checks ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineTls {
    /// CA certificate(s) the engine's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// Our client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl EngineTls {
    /// From the environment as docker reads it: `DOCKER_TLS_VERIFY` set and not empty means
    /// `ca.pem`, `cert.pem` and `key.pem` in `DOCKER_CERT_PATH` (default `~/.docker`).
    pub fn from_env() -> Option<EngineTls> {
        Self::from_vars(
            std::env::var("DOCKER_TLS_VERIFY").ok().as_deref(),
            std::env::var("DOCKER_CERT_PATH").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )
    }

    /// [`EngineTls::from_env`] over given values (for tests).
    pub fn from_vars(
        tls_verify: Option<&str>,
        cert_path: Option<&str>,
        home: Option<&str>,
    ) -> Option<EngineTls> {
        if tls_verify.is_none_or(str::is_empty) {
            return None;
        }
        let dir = match cert_path.filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(home.unwrap_or("/root")).join(".docker"),
        };
        Some(EngineTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        })
    }
}

/// A client for the engine at `host` (`unix:///path`, `tcp://h:p`, `http://h:p`), or at
/// `DOCKER_HOST` / the local socket when `None`; over TLS with `tls` (or when
/// `DOCKER_TLS_VERIFY` says so, as for docker), which needs a `tcp://` or `https://` host.
/// It speaks bollard's newest API version until [`negotiate`] lowers it to the engine's: use
/// [`connect`] unless the engine may be away.
pub fn client(host: Option<&str>, tls: Option<&EngineTls>) -> Result<Docker> {
    let v = bollard::API_DEFAULT_VERSION;
    let env_tls = EngineTls::from_env();
    if let Some(tls) = tls.or(env_tls.as_ref()) {
        let env_host = std::env::var("DOCKER_HOST").ok();
        let Some(h) = host.or(env_host.as_deref()) else {
            return Err(RuntimeError::Engine {
                op: "connect to the Docker engine over TLS".into(),
                message: "TLS needs the engine's address: --docker-host tcp://HOST:2376".into(),
            });
        };
        if !(h.starts_with("tcp://") || h.starts_with("https://")) {
            return Err(RuntimeError::Engine {
                op: format!("connect to {h} over TLS"),
                message: "TLS needs a tcp://HOST:PORT or https://HOST:PORT engine address".into(),
            });
        }
        for (what, path) in [
            ("CA certificate", &tls.ca),
            ("client certificate", &tls.cert),
            ("client key", &tls.key),
        ] {
            if !path.is_file() {
                return Err(RuntimeError::Engine {
                    op: format!("connect to {h} over TLS"),
                    message: format!("{what} {} is not a readable file", path.display()),
                });
            }
        }
        return Docker::connect_with_ssl(h, &tls.key, &tls.cert, &tls.ca, REQUEST_TIMEOUT_SECS, v)
            .map_err(|e| engine(format!("connect to {h} over TLS"), e));
    }
    let r = match host {
        None => Docker::connect_with_local_defaults().or_else(|_| Docker::connect_with_defaults()),
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
            Docker::connect_with_unix(h, REQUEST_TIMEOUT_SECS, v)
        }
        Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, v)
        }
        Some(h) => {
            return Err(RuntimeError::Engine {
                op: format!("connect to {h}"),
                message: "expected unix://PATH, tcp://HOST:PORT or http://HOST:PORT".into(),
            })
        }
    };
    r.map_err(|e| {
        engine(
            format!("connect to {}", host.unwrap_or("the local Docker engine")),
            e,
        )
    })
}

/// Lowers the client's API version to the engine's when the engine is older (bollard's
/// default is newer than many engines in the field, which refuse a too-new client).
/// Clones of a client share its version, so one negotiation serves them all.
pub async fn negotiate(docker: &Docker) -> Result<()> {
    docker
        .clone()
        .negotiate_version()
        .await
        .map(|_| ())
        .map_err(|e| engine("negotiate the engine API version", e))
}

/// A client for `host` (see [`client`]) that speaks the engine's API version.
pub async fn connect(host: Option<&str>, tls: Option<&EngineTls>) -> Result<Docker> {
    let docker = client(host, tls)?;
    negotiate(&docker).await?;
    Ok(docker)
}

/// Whether the engine at `host` is on another machine (a TCP address that is not loopback).
pub(super) fn is_remote(host: &str) -> bool {
    let Some(rest) = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| host.strip_prefix(p))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let name = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => name != "localhost",
    }
}

/// A bollard error as a runtime error: no answer at all is `Unavailable`, a refusal `Engine`.
pub(super) fn engine(op: impl Into<String>, e: DockerError) -> RuntimeError {
    let op = op.into();
    match e {
        DockerError::DockerResponseServerError { message, .. } => {
            RuntimeError::Engine { op, message }
        }
        // No answer from the engine: the transport failed, not the operation.
        e @ (DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_)) => RuntimeError::Unavailable {
            op,
            message: transport_words(&e),
        },
        other => RuntimeError::Engine {
            op,
            message: other.to_string(),
        },
    }
}

/// A transport error with its causes, on one line ("connection refused", not just "error
/// trying to connect").
fn transport_words(e: &DockerError) -> String {
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !words.contains(&text) {
            words = format!("{words}: {text}");
        }
        cause = c.source();
    }
    words
}

/// An engine error saying the container is already where we want it (the status code of
/// these refusals differs between engine versions, the words do not).
pub(super) fn is_already_state(e: &DockerError, words: &str) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError { message, .. } if message.contains(words)
    )
}

/// A 404 from the engine.
pub(super) fn is_not_found(e: &DockerError) -> bool {
    status(e) == Some(404)
}

/// The engine's HTTP status, if it answered.
pub(super) fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's message without bollard's wrapping.
pub(super) fn engine_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_sockets_are_local() {
        assert!(!is_remote("unix:///var/run/docker.sock"));
        assert!(!is_remote("tcp://127.0.0.1:2376"));
        assert!(!is_remote("tcp://localhost:2376"));
        assert!(!is_remote("tcp://[::1]:2376"));
        assert!(is_remote("tcp://10.0.0.5:2376"));
        assert!(is_remote("https://docker.example.org:2376"));
    }

    #[test]
    fn tls_from_the_environment_as_docker_reads_it() {
        assert_eq!(EngineTls::from_vars(None, Some("/c"), Some("/h")), None);
        assert_eq!(EngineTls::from_vars(Some(""), Some("/c"), Some("/h")), None);
        let t = EngineTls::from_vars(Some("1"), Some("/c"), Some("/h")).unwrap();
        assert_eq!(t.ca, PathBuf::from("/c/ca.pem"));
        assert_eq!(t.cert, PathBuf::from("/c/cert.pem"));
        assert_eq!(t.key, PathBuf::from("/c/key.pem"));
        let t = EngineTls::from_vars(Some("1"), None, Some("/h")).unwrap();
        assert_eq!(t.ca, PathBuf::from("/h/.docker/ca.pem"));
    }

    #[test]
    fn tls_needs_a_tcp_address_and_its_files() {
        let tls = EngineTls {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let e = client(Some("unix:///var/run/docker.sock"), Some(&tls)).unwrap_err();
        assert!(e.to_string().contains("tcp://"), "{e}");
        let e = client(Some("tcp://127.0.0.1:2376"), Some(&tls)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
