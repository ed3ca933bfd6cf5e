//! The service's one error type: domain and store failures, each variant saying what a caller
//! can do about it. Domain-only: it must never know gRPC (the one mapping to status codes is
//! `api/status.rs`).

/// Everything that can go wrong in the domain or the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message names the field and the value.
    #[error("{0}")]
    Invalid(String),
    /// No such object.
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    /// The name is taken.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// No or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Denied(String),
    /// Quota or capacity exhausted; the message explains which.
    #[error("{0}")]
    Exhausted(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    Precondition(String),
    /// Something needed is temporarily away (a node not connected).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON column could not be read.
    #[error("stored data: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored policy or kind names no variant.
    #[error("stored data: {0}")]
    Stored(#[from] crate::model::UnknownValue),
    /// Something else internal.
    #[error("{0}")]
    Internal(String),
}

/// Result with the service's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    /// Shorthand for a not-found error.
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }
    /// Shorthand for a permission-denied error.
    pub fn denied(msg: impl Into<String>) -> Self {
        Error::Denied(msg.into())
    }
}

/// The service asked for a transition the state machine forbids: a bug, not bad input.
impl From<crate::state::IllegalTransition> for Error {
    fn from(e: crate::state::IllegalTransition) -> Self {
        Error::Internal(e.to_string())
    }
}
