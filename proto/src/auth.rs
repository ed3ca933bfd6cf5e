//! The one client-side bearer interceptor: every Slicebed client (slicectl, node-manager, the
//! black-box tests) authenticates by putting `authorization: Bearer <secret>` on each request.
//! The secret is validated once, when the interceptor is made, so a bad token is an error at
//! start-up rather than a failure on every call. A client may also name its calls with an
//! `x-request-id` ([`Bearer::with_request_id`]), which the service keeps and logs.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key the service reads the bearer token from.
pub const AUTHORIZATION: &str = "authorization";
/// The metadata key naming a request, in its logs and in its answer.
pub const REQUEST_ID: &str = "x-request-id";

/// A token that cannot travel in gRPC metadata (not visible ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadToken;

impl fmt::Display for BadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the token holds characters that cannot be sent (expected printable ASCII)")
    }
}

impl std::error::Error for BadToken {}

/// Adds `authorization: Bearer <secret>` to every request; `anonymous()` adds nothing
/// (for health and reflection, or to test that the service refuses unauthenticated calls).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>, Option<MetadataValue<Ascii>>);

impl Bearer {
    /// An interceptor sending `secret`.
    pub fn new(secret: &str) -> Result<Self, BadToken> {
        Ok(Self(Some(header_value(secret)?), None))
    }

    /// An interceptor sending no credential.
    pub fn anonymous() -> Self {
        Self(None, None)
    }

    /// Also sends `x-request-id: id` on every request; `None` when `id` is not one the service
    /// keeps (1 to 64 of `A-Z a-z 0-9 . _ -`), so the caller never believes in an id the
    /// service replaced.
    pub fn with_request_id(self, id: &str) -> Option<Self> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let value = ok.then(|| id.parse().ok()).flatten()?;
        Some(Self(self.0, Some(value)))
    }

    /// Puts the credential (and the request id, if any) on one request (for calls made
    /// without the interceptor, such as a node's session stream opened on a shared channel).
    pub fn apply<T>(&self, req: &mut Request<T>) {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        if let Some(v) = &self.1 {
            req.metadata_mut().insert(REQUEST_ID, v.clone());
        }
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        let shown = if self.0.is_some() {
            "Bearer(..)"
        } else {
            "Bearer(none)"
        };
        f.write_str(shown)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        self.apply(&mut req);
        Ok(req)
    }
}

/// `Bearer <secret>` as a metadata value.
pub fn header_value(secret: &str) -> Result<MetadataValue<Ascii>, BadToken> {
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadToken);
    }
    format!("Bearer {secret}").parse().map_err(|_| BadToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_the_secret_on_every_request() {
        let mut b = Bearer::new("sbu_abc").unwrap();
        let req = b.call(Request::new(())).unwrap();
        assert_eq!(req.metadata().get(AUTHORIZATION).unwrap(), "Bearer sbu_abc");
        let req = Bearer::anonymous().call(Request::new(())).unwrap();
        assert!(req.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn sends_a_request_id_only_when_the_service_would_keep_it() {
        let mut b = Bearer::new("sbu_abc")
            .unwrap()
            .with_request_id("ctl-3f9c.2_a")
            .unwrap();
        let req = b.call(Request::new(())).unwrap();
        assert_eq!(req.metadata().get(REQUEST_ID).unwrap(), "ctl-3f9c.2_a");
        assert_eq!(req.metadata().get(AUTHORIZATION).unwrap(), "Bearer sbu_abc");
        for bad in ["", "a b", "x/y", &"a".repeat(65), "\u{e9}"] {
            assert!(
                Bearer::anonymous().with_request_id(bad).is_none(),
                "{bad:?}"
            );
        }
        let req = Bearer::anonymous().call(Request::new(())).unwrap();
        assert!(req.metadata().get(REQUEST_ID).is_none());
    }

    #[test]
    fn refuses_tokens_that_cannot_be_sent() {
        for bad in ["", "  ", "sbu_a b", "sbu_\u{e9}", "sbu_\n"] {
            assert_eq!(Bearer::new(bad).err(), Some(BadToken), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", Bearer::new("secret").unwrap()),
            "Bearer(..)"
        );
    }
}
