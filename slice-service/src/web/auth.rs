//! Who is calling the status page's private endpoints: `Authorization: Bearer sbu_…`,
//! authenticated by exactly the code the gRPC API uses (`crate::auth`), so revoked and expired
//! tokens, deleted users and node or enrollment credentials are refused the same way.
//!
//! The page's script sends the token in this header only: never in a URL, a cookie or a form
//! field, so it reaches no log, history or Referer, and no other site can make a browser send
//! it (no ambient credential, hence no CSRF). This module must never log a secret.

use std::time::Duration;

use hyper::header::{HeaderMap, AUTHORIZATION};

use crate::auth::{self, Principal};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::model::{now_ms, Token};

/// An authenticated person: who, the token they came with, and its secret (long streams check
/// it again when credentials are revoked).
pub struct Caller {
    pub principal: Principal,
    pub token: Token,
    pub secret: String,
}

/// The bearer secret of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str> {
    let v = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Error::Unauthenticated("missing token (Authorization: Bearer)".into()))?;
    let v = v
        .to_str()
        .map_err(|_| Error::Unauthenticated("malformed Authorization header".into()))?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Unauthenticated("Authorization must be \"Bearer <token>\"".into()))
}

/// Authenticates a request; only user tokens are accepted.
pub async fn caller(core: &Core, headers: &HeaderMap) -> Result<Caller> {
    let secret = bearer(headers)?.to_string();
    let mut c = core.db.conn().await?;
    let (principal, token) = auth::authenticate_token(&mut c, &secret).await?;
    principal.user()?;
    Ok(Caller {
        principal,
        token,
        secret,
    })
}

/// Resolves, with the reason, once `secret` no longer authenticates: checked when a
/// revocation is committed anywhere and when the token's expiry comes; never while it stays
/// good. The same rule as the gRPC streams' guard (`api/guard.rs`).
pub async fn token_fails(core: std::sync::Arc<Core>, secret: String, token: Token) -> Error {
    let mut revoked = auth::revocations();
    revoked.mark_unchanged();
    let left = token
        .expires_at
        .map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0)));
    let expired = async {
        match left {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            changed = revoked.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
                let check = match core.db.conn().await {
                    Ok(mut c) => auth::authenticate(&mut c, &secret).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = check {
                    return e;
                }
            }
            _ = &mut expired => return Error::Unauthenticated("token has expired".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn the_bearer_header_is_read_and_anything_else_refused() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h)
            .unwrap_err()
            .to_string()
            .contains("missing token"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sbu_abc "));
        assert_eq!(bearer(&h).unwrap(), "sbu_abc");
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        assert!(matches!(bearer(&h), Err(Error::Unauthenticated(_))));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&h).is_err());
    }
}
