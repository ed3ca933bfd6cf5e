//! Request ids: the short token that ties a client's error line to the service's log lines and
//! exported spans for one call.
//!
//! A client may send its own id in `x-request-id` (slicectl does not need to, but proxies and
//! scripts do); it is kept only if it is short and made of safe characters, and otherwise
//! replaced by a fresh one. An accepted id is only ever echoed and logged: it must never be
//! used to look anything up, to authorise, or to deduplicate, since any client can send any id.

use std::fmt;

use http::HeaderValue;

/// The header carrying the id, on requests (optional) and on every response.
pub const HEADER: &str = "x-request-id";

/// Longest id accepted from a client, in bytes.
pub const MAX_LEN: usize = 64;

/// One call's id: 1 to [`MAX_LEN`] characters from `A-Z a-z 0-9 . _ -`, so that it prints as
/// itself in any log line or terminal and needs no quoting in a shell or a grep.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id: 64 random bits as 16 lowercase hex digits.
    pub fn generate() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    /// The client's id if it is well-formed, else `None` (the caller then generates one).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        // Checked as bytes above, so this is ASCII and the conversion cannot fail.
        ok.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// The id of a request: its own `x-request-id` if well-formed, else a fresh one.
    pub fn of_request(headers: &http::HeaderMap) -> Self {
        headers
            .get(HEADER)
            .and_then(|v| Self::parse(v.as_bytes()))
            .unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        // Only safe ASCII by construction; the fallback is unreachable but keeps this total.
        HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_are_16_hex_digits_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
        // A generated id is one a client could have sent.
        assert_eq!(RequestId::parse(a.as_str().as_bytes()), Some(a));
    }

    #[test]
    fn well_formed_client_ids_are_kept() {
        for ok in ["abc", "3f9c2a0b1d4e5f67", "req-1.2_3", &"a".repeat(MAX_LEN)] {
            assert_eq!(
                RequestId::parse(ok.as_bytes()).map(|i| i.0),
                Some(ok.to_string())
            );
        }
    }

    #[test]
    fn malformed_client_ids_are_refused() {
        for bad in [
            "",
            &"a".repeat(MAX_LEN + 1),
            "has space",
            "new\nline",
            "esc\x1b[31m",
            "quote\"",
            "semi;colon",
            "slash/path",
            "ünïcode",
            "%41",
        ] {
            assert_eq!(RequestId::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(RequestId::parse(b"\xff\xfe"), None);
    }

    #[test]
    fn a_request_keeps_a_good_id_and_gets_a_fresh_one_otherwise() {
        let mut h = http::HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("client-id-7"));
        assert_eq!(RequestId::of_request(&h).as_str(), "client-id-7");
        h.insert(HEADER, HeaderValue::from_static("bad id with spaces"));
        let fresh = RequestId::of_request(&h);
        assert_eq!(fresh.as_str().len(), 16);
        assert_ne!(fresh.as_str(), "bad id with spaces");
        let none = RequestId::of_request(&http::HeaderMap::new());
        assert_eq!(none.as_str().len(), 16);
        assert_eq!(none.header_value().to_str().unwrap(), none.as_str());
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_is_safe_to_print_and_send(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(id) = RequestId::parse(&raw) {
                prop_assert!(id.as_str().len() <= MAX_LEN);
                prop_assert!(id.as_str().chars().all(|c| c.is_ascii_graphic()));
                prop_assert_eq!(id.as_str().as_bytes(), &raw[..]);
                prop_assert!(HeaderValue::from_str(id.as_str()).is_ok());
            }
        }
    }
}
