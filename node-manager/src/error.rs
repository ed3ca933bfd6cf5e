//! Errors of the node manager library. Variants carry context; the binary adds its own with
//! anyhow and prints the chain on one line.

use std::path::PathBuf;

use crate::runtime::RuntimeError;

/// Errors of the node manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A state file could not be read or written.
    #[error("{action} {path}")]
    StateFile {
        /// What was attempted ("write", "read", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `node.json` is not valid.
    #[error("invalid node config {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The state directory already holds an enrollment.
    #[error("{dir} already holds an enrollment (node {node:?}); pass --force to replace it")]
    AlreadyEnrolled {
        /// State directory.
        dir: PathBuf,
        /// The node enrolled there.
        node: String,
    },
    /// The state directory holds no enrollment.
    #[error("{dir} holds no enrollment; run `node-manager enroll` first")]
    NotEnrolled {
        /// State directory.
        dir: PathBuf,
    },
    /// The server URL is not usable.
    #[error("invalid server URL {url:?}")]
    ServerUrl {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// TLS settings could not be applied.
    #[error("TLS configuration for {url}")]
    Tls {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The service could not be reached.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The node's key or certificate is unusable.
    #[error("node identity: {0}")]
    Identity(String),
    /// The node's private key may be read by others.
    #[error(
        "{path} is the node's private key and others may read or write it; run `chmod 600 {path}`"
    )]
    KeyExposed {
        /// The key file.
        path: PathBuf,
    },
    /// The state dir holds a bearer credential from before mutual TLS.
    #[error("{dir} holds a node credential from an older version, which the service no longer accepts: enroll again with a new enrollment token (`node-manager enroll --force ...`); slivers are kept")]
    LegacyCredential {
        /// State directory.
        dir: PathBuf,
    },
    /// The service refused the enrollment token.
    #[error("enrollment refused: {0}")]
    EnrollRefused(String),
    /// The service refused the node's identity (its client certificate).
    #[error("node identity refused: {0}")]
    CredentialRefused(String),
    /// Another RPC failure.
    #[error("{op}: {code:?}: {message}")]
    Rpc {
        /// The RPC.
        op: &'static str,
        /// gRPC code.
        code: tonic::Code,
        /// Server message.
        message: String,
    },
    /// The control channel broke the protocol or closed.
    #[error("control channel: {0}")]
    Protocol(String),
    /// A token or credential cannot be sent as metadata.
    #[error("token is not valid ASCII metadata")]
    BadToken,
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Building the base image failed.
    #[error("{0}")]
    Image(String),
}

impl Error {
    /// Maps a gRPC status of `op` to an error with the server's message, not tonic's dump.
    pub fn from_status(op: &'static str, s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match (op, s.code()) {
            ("enroll", tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
                Error::EnrollRefused(message)
            }
            (_, tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
                Error::CredentialRefused(message)
            }
            (_, code) => Error::Rpc { op, code, message },
        }
    }
}

/// Result of the node manager library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
