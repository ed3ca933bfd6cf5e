//! Content digests: `sha256:<64 lowercase hex>`, the only algorithm the store accepts.
//! Parsing is strict (no uppercase, no other algorithm) so that one blob has one name,
//! which is also a safe file name.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::Digest(format!(
                "digest {:?}: must start with \"sha256:\"",
                shorten(s)
            ))
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::Digest(format!(
                "digest {:?}: must be sha256: and 64 lowercase hex digits",
                shorten(s)
            )));
        }
        Ok(Self(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits (a safe file name).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// Ok when `bytes` hash to this digest, else [`Error::Mismatch`].
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(Error::Mismatch {
                expected: self.0.clone(),
                actual: actual.0,
            })
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes everything written through it, counting bytes; wraps any writer (or none).
#[derive(Debug)]
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Sha256Writer<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
    /// The digest of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, W) {
        let d = Digest(format!("sha256:{}", hex::encode(self.hasher.finalize())));
        (d, self.inner)
    }
    /// Feeds bytes to the hash without writing them (e.g. an existing partial file on resume).
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_digest_and_strict_parsing() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(63))).is_err());
        assert!(Digest::parse(&format!("sha256:{}/..", "a".repeat(62))).is_err());
        assert!(d.verify(b"").is_ok());
        assert!(matches!(d.verify(b"x"), Err(Error::Mismatch { .. })));
    }

    #[test]
    fn writer_hashes_what_it_writes() {
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.update(b"wor");
        w.write_all(b"ld").unwrap();
        let (d, inner) = w.finish();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(inner, b"hello ld");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_canonical(s in ".{0,80}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert_eq!(d.hex().len(), 64);
            }
        }
    }
}
