//! Reaching the Docker engine: the client, API version negotiation, and the one translation of
//! bollard's errors into [`RuntimeError`]. Nothing outside `runtime::docker` sees these types.

use bollard::errors::Error as DockerError;
use bollard::Docker;

use crate::runtime::{Result, RuntimeError};

/// Seconds the engine may take to answer one request (not a stream).
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// A client for the engine at `host` (`unix:///path`, `tcp://h:p`, `http://h:p`), or at
/// `DOCKER_HOST` / the local socket when `None`. It speaks bollard's newest API version until
/// [`negotiate`] lowers it to the engine's: use [`connect`] unless the engine may be away.
pub fn client(host: Option<&str>) -> Result<Docker> {
    let v = bollard::API_DEFAULT_VERSION;
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
pub async fn connect(host: Option<&str>) -> Result<Docker> {
    let docker = client(host)?;
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
}
