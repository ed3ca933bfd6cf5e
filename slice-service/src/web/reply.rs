//! HTTP responses of the status page: bodies, the headers every answer carries, and the one
//! mapping of domain errors to HTTP status codes for this listener (`api/status.rs` is the
//! gRPC one). As there, internal details are logged and never sent.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::Error;

/// Every response body: a whole text or a stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The policy every answer carries: scripts, styles, images and fetches from this origin only,
/// no inline script or style, never framed, no plugins, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// A response with a body and its content type.
pub fn with(status: StatusCode, ctype: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

pub fn html(body: String) -> Response<Body> {
    with(StatusCode::OK, "text/html; charset=utf-8", full(body))
}

pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut m = msg.into();
    m.push('\n');
    with(status, "text/plain; charset=utf-8", full(m))
}

/// Marks an answer as never to be stored by the browser or a proxy (anything per user).
pub fn private(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The domain error as an HTTP answer, in plain text.
pub fn error(e: Error) -> Response<Body> {
    let status = match &e {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::AlreadyExists { .. } | Error::Precondition(_) => StatusCode::CONFLICT,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Denied(_) => StatusCode::FORBIDDEN,
        Error::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Db(_)
        | Error::Migrate(_)
        | Error::Json(_)
        | Error::Stored(_)
        | Error::Internal(_) => {
            tracing::error!(error = %e, "web: internal error");
            return private(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (see the service log)",
            ));
        }
    };
    let mut r = private(text(status, e.to_string()));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"slicebed\""),
        );
    }
    r
}

/// Adds the headers every answer carries.
pub fn secure(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_words_and_internal_ones_are_hidden() {
        let r = error(Error::Unauthenticated("token has been revoked".into()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = error(Error::Internal("secret path /var/lib/x".into()));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error(Error::denied("no")).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn every_answer_forbids_inline_scripts_and_framing() {
        let mut r = html("<p>x</p>".into());
        secure(&mut r);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
