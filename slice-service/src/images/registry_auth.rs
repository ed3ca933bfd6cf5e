//! Who is calling the read-only registry (`registry.rs`): the secret of an `Authorization`
//! header (Bearer, or the password of Basic) resolved to a user, a slice's pull credential
//! (`pull.rs`, checked in `core/pull_grant.rs`) or nobody. It decides nothing about images.

use hyper::header;
use hyper::Request;

use super::pull::PREFIX as PULL_PREFIX;
use crate::core::{Core, PullScope};
use crate::error::Result;
use crate::model::User;

/// The bearer token `/token` gives callers without credentials.
pub const ANONYMOUS_TOKEN: &str = "anonymous";

/// The secret of an `Authorization` header: `Bearer T`, or `Basic` with T as the password.
pub fn secret(req: &Request<hyper::body::Incoming>) -> Option<String> {
    let v = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    if let Some(t) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim().to_string()).filter(|t| t != ANONYMOUS_TOKEN);
    }
    let b = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = String::from_utf8(base64_decode(b.trim())?).ok()?;
    Some(decoded.split_once(':')?.1.to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Who is asking: a user (`None`: anonymous) or a slice's pull credential.
pub enum Caller {
    User(Option<User>),
    Pull(PullScope),
}

impl Caller {
    /// The caller behind a credential: a pull credential (`sbp_`), a user token, or none.
    pub async fn of(core: &Core, secret: Option<&str>) -> Result<Self> {
        match secret {
            Some(s) if s.starts_with(PULL_PREFIX) => core.pull_scope(s).await.map(Caller::Pull),
            s => core.registry_user(s).await.map(Caller::User),
        }
    }

    /// Anonymous: a missing private image is 401 (log in), not 404.
    pub fn anonymous(&self) -> bool {
        matches!(self, Caller::User(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        // "u:sbu_x" in base64.
        assert_eq!(base64_decode("dTpzYnVfeA==").unwrap(), b"u:sbu_x");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
    }
}
