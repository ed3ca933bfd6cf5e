//! The node's identity for mutual TLS: a private key created at enrollment (`node.key`, mode
//! 0600 in the state dir), the client certificate the service's CA signed for it
//! (`node.crt`), and when to ask for a new one (at 2/3 of its life, over the control channel,
//! with a CSR for the same key: the key stays put, only the certificate changes; a new key
//! comes with a new enrollment).
//!
//! The key must never leave the node: it is never sent, logged, or written anywhere but
//! `node.key`, and never with looser permissions, not even for an instant.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::error::{Error, Result};

/// File name of the node's private key in the state dir.
pub const KEY_FILE: &str = "node.key";
/// File name of the node's client certificate in the state dir.
pub const CERT_FILE: &str = "node.crt";

/// A key and the certificate issued for it (both PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("NodeIdentity").finish_non_exhaustive()
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Identity(what.to_string())
}

/// A new private key (PEM).
pub fn new_key() -> Result<String> {
    Ok(KeyPair::generate()
        .map_err(|e| bad(format!("generating the node key: {e}")))?
        .serialize_pem())
}

/// A certificate signing request for `key_pem`, naming `node` (the service names the node
/// itself; this is only a courtesy).
pub fn csr(key_pem: &str, node: &str) -> Result<String> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("reading the node key: {e}")))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    p.distinguished_name = dn;
    p.serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| bad(format!("making a certificate signing request: {e}")))
}

/// The validity of a certificate (PEM): (not before, not after).
pub fn validity(cert_pem: &str) -> Result<(SystemTime, SystemTime)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| bad(format!("reading the node certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("reading the node certificate: {e}")))?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let v = cert.validity();
    Ok((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

/// When a certificate valid over `(from, to)` should be renewed: at 2/3 of its life.
pub fn renew_at((from, to): (SystemTime, SystemTime)) -> SystemTime {
    let life = to.duration_since(from).unwrap_or_default();
    from + life * 2 / 3
}

impl NodeIdentity {
    /// The TLS client identity.
    pub fn tls(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// Whether the certificate is due for renewal at `now` (unreadable ones are).
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        validity(&self.cert_pem).map_or(true, |v| now >= renew_at(v))
    }
}

/// The node's current identity, shared by the connections and replaced on renewal (in the
/// state dir too, when there is one).
#[derive(Debug, Clone)]
pub struct IdentityStore {
    dir: Option<PathBuf>,
    current: Arc<Mutex<NodeIdentity>>,
    /// When a renewal was last asked for (shared by every connection using this identity).
    asked: Arc<Mutex<Option<std::time::Instant>>>,
}

impl IdentityStore {
    /// An identity kept in `dir` (or only in memory with `None`).
    pub fn new(identity: NodeIdentity, dir: Option<&Path>) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
            current: Arc::new(Mutex::new(identity)),
            asked: Arc::default(),
        }
    }

    /// Whether this caller should ask for a renewal now: none was asked for within `retry`
    /// (by any connection sharing this identity). Claiming records the request.
    pub fn claim_renewal(&self, retry: Duration) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.is_some_and(|t| t.elapsed() < retry) {
            return false;
        }
        *asked = Some(std::time::Instant::now());
        true
    }

    /// The identity now.
    pub fn get(&self) -> NodeIdentity {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes a renewed certificate for the same key; it is written before it is used.
    pub fn renewed(&self, cert_pem: &str) -> Result<()> {
        validity(cert_pem)?;
        if let Some(dir) = &self.dir {
            crate::node_files::write_cert(dir, cert_pem)?;
        }
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cert_pem = cert_pem.to_string();
        *self.asked.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        let from = UNIX_EPOCH + Duration::from_secs(1000);
        let to = from + Duration::from_secs(300);
        assert_eq!(renew_at((from, to)), from + Duration::from_secs(200));
    }

    #[test]
    fn a_csr_carries_the_key_and_garbage_is_an_error() {
        let key = new_key().unwrap();
        let pem = csr(&key, "n1").unwrap();
        assert!(pem.contains("CERTIFICATE REQUEST"));
        assert!(!pem.contains("PRIVATE KEY"));
        assert!(csr("junk", "n1").is_err());
        assert!(validity("junk").is_err());
        let id = NodeIdentity {
            key_pem: key,
            cert_pem: "junk".into(),
        };
        assert!(id.renewal_due(SystemTime::now()), "unreadable: renew");
        assert!(!format!("{id:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_fresh_certificate_is_not_due_and_a_renewed_one_is_written() {
        let key = new_key().unwrap();
        let kp = KeyPair::from_pem(&key).unwrap();
        let mut p = CertificateParams::default();
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = now + time::Duration::days(7);
        let cert = p.self_signed(&kp).unwrap().pem();
        let id = NodeIdentity {
            key_pem: key.clone(),
            cert_pem: cert.clone(),
        };
        assert!(!id.renewal_due(SystemTime::now()));
        assert!(id.renewal_due(SystemTime::now() + Duration::from_secs(5 * 86_400)));
        let dir = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(
            NodeIdentity {
                key_pem: key,
                cert_pem: "old".into(),
            },
            Some(dir.path()),
        );
        assert!(store.renewed("junk").is_err());
        store.renewed(&cert).unwrap();
        assert_eq!(store.get().cert_pem, cert);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap(),
            cert
        );
    }
}
