//! The one mapping from the service's domain errors to gRPC status codes, at the API edge.
//!
//! Every handler's `?` goes through it. Internal details (SQL, I/O, stored data, broken
//! invariants) are logged here and must never be sent to clients: they get a fixed message.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Denied(_) => Code::PermissionDenied,
            Error::Exhausted(_) => Code::ResourceExhausted,
            Error::Precondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Db(_)
            | Error::Migrate(_)
            | Error::Json(_)
            | Error::Stored(_)
            | Error::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                return Status::internal("internal error (see the service log)");
            }
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_keep_their_words_and_internal_ones_are_hidden() {
        let s = Status::from(Error::not_found("slice", "demo"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "slice \"demo\" not found")
        );
        let s = Status::from(Error::invalid("restart_policy: unknown value 7"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "restart_policy: unknown value 7");
        let s = Status::from(Error::Exhausted("no room".into()));
        assert_eq!(s.code(), Code::ResourceExhausted);
        let s = Status::from(Error::Internal("secret path /var/lib/x".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/var/lib"), "{}", s.message());
    }
}
