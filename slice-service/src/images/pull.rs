//! Pull credentials for Kubernetes sites: a cluster's nodes pull a pinned slice's image from
//! the read-only `/v2` registry with a credential minted for that slice alone.
//!
//! A credential is `sbp_<slice id>.<expiry ms>.<HMAC-SHA256>` under a key kept in the data
//! directory (`pull.key`, 0600, made at the first start). It names only the slice and its end:
//! what it opens (the slice's repository, pinned manifest and that manifest's blobs) is read
//! from the database at each request (`core/pull_grant.rs`), so a deleted slice's credential
//! opens nothing even before it expires. Minting is deterministic, so re-sending a sliver
//! changes no Secret until the lease moves. This module never decides what a credential
//! opens, and a credential is never stored.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What every pull credential starts with (user tokens are `sbu_`).
pub const PREFIX: &str = "sbp_";
/// The username sent with a pull credential (the registry ignores it).
pub const USERNAME: &str = "slicebed-pull";
/// The key file in the data directory.
pub const KEY_FILE: &str = "pull.key";

/// Mints and checks pull credentials; set on the core when the registry is served.
#[derive(Clone)]
pub struct PullIssuer {
    key: [u8; 32],
    registry: String,
}

impl std::fmt::Debug for PullIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullIssuer")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A credential whose signature checks: the slice it speaks for and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullClaim {
    /// The slice's id (not its name, which a later slice may reuse).
    pub slice_id: String,
    /// Epoch milliseconds after which it is refused.
    pub expires_ms: i64,
}

impl PullIssuer {
    /// An issuer with `key`, advertising `registry` ("host:port") to clusters.
    pub fn new(key: [u8; 32], registry: impl Into<String>) -> Self {
        Self {
            key,
            registry: registry.into(),
        }
    }

    /// The key of `<data_dir>/pull.key`, created (0600, 256 random bits) when missing.
    pub fn load_or_create(data_dir: &Path, registry: impl Into<String>) -> anyhow::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(key).as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let raw = hex::decode(text.trim()).ok().filter(|k| k.len() == 32);
        let key: [u8; 32] = raw
            .and_then(|k| k.try_into().ok())
            .with_context(|| format!("{}: not 64 hex digits", path.display()))?;
        Ok(Self::new(key, registry))
    }

    /// The registry address clusters pull from.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The credential for slice `slice_id` until `expires_ms`.
    pub fn mint(&self, slice_id: &str, expires_ms: i64) -> String {
        let body = format!("{slice_id}.{expires_ms}");
        let mac = hex::encode(hmac_sha256(&self.key, body.as_bytes()));
        format!("{PREFIX}{body}.{mac}")
    }

    /// The claim of a credential this issuer minted; `None` for anything else (a forged or
    /// altered one, another key's, a user token). Expiry is the caller's to check.
    pub fn verify(&self, secret: &str) -> Option<PullClaim> {
        let rest = secret.strip_prefix(PREFIX)?;
        let (body, mac) = rest.rsplit_once('.')?;
        let (slice_id, expires) = body.rsplit_once('.')?;
        let expires_ms: i64 = expires.parse().ok()?;
        let given = hex::decode(mac).ok()?;
        let want = hmac_sha256(&self.key, body.as_bytes());
        (given.len() == want.len() && constant_time_eq(&given, &want)).then(|| PullClaim {
            slice_id: slice_id.to_string(),
            expires_ms,
        })
    }
}

/// HMAC-SHA256 (RFC 2104) with a key of one block or less.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_1() {
        // RFC 4231 test case 1 uses a 20-byte key of 0x0b; padded with zeros to 32 bytes it
        // is the same HMAC key (keys shorter than the block are zero-padded).
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn minted_credentials_verify_and_altered_ones_do_not() {
        let a = PullIssuer::new([7; 32], "reg:5000");
        let c = a.mint("3f2a-slice", 1_000);
        assert!(c.starts_with("sbp_3f2a-slice.1000."));
        assert_eq!(a.mint("3f2a-slice", 1_000), c, "deterministic");
        assert_eq!(
            a.verify(&c),
            Some(PullClaim {
                slice_id: "3f2a-slice".into(),
                expires_ms: 1_000
            })
        );
        // A later expiry or another slice under the same MAC: refused.
        assert_eq!(a.verify(&c.replace(".1000.", ".9000.")), None);
        assert_eq!(a.verify(&c.replace("3f2a", "3f2b")), None);
        // Another service's key, a user token, garbage.
        assert_eq!(PullIssuer::new([8; 32], "reg:5000").verify(&c), None);
        for bad in ["sbu_abc", "sbp_", "sbp_x.y.z", "sbp_a.1.00", ""] {
            assert_eq!(a.verify(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_key_file_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = PullIssuer::load_or_create(dir.path(), "r:1").unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = PullIssuer::load_or_create(dir.path(), "r:1").unwrap();
        assert_eq!(b.verify(&a.mint("s", 5)).unwrap().expires_ms, 5);
        std::fs::write(dir.path().join(KEY_FILE), "short").unwrap();
        let e = PullIssuer::load_or_create(dir.path(), "r:1").unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}
