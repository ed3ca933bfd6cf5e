//! The service's own certificate authority and its TLS setup: it signs node client
//! certificates (from a CSR: the node's key never leaves the node) and, under `--tls auto`,
//! the service's own server certificate; it reads the peer certificate a node presents.
//!
//! It must never accept a key file that others can read, never let a CSR choose what the
//! certificate says (only the CSR's public key is used: the service names the node), and
//! never serve plaintext off loopback unless told `--insecure`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{Config, TlsMode};
use crate::error::{Error, Result};

/// Organization written into every node certificate (and nothing else the CA signs).
pub const NODE_ORG: &str = "slicebed node";
/// Organization written into every cluster agent's certificate: a cluster certificate is
/// never read as a node's, nor the reverse (and their serials live in separate tables).
pub const CLUSTER_ORG: &str = "slicebed cluster";

/// How long the CA itself is valid when the service generates it.
const CA_LIFE: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long the `--tls auto` server certificate is valid (a new one is made at every start).
const SERVER_LIFE: Duration = Duration::from_secs(365 * 86_400);
/// Certificates start a little in the past, so a node whose clock is behind can use them.
const BACKDATE: Duration = Duration::from_secs(300);

/// How far a certificate of life `ttl` is backdated: `BACKDATE`, but at most a tenth of its
/// life, so that a node renewing at 2/3 of the validity it sees renews at 2/3 of `ttl`.
fn backdate(ttl: Duration) -> Duration {
    BACKDATE.min(Duration::from_secs((ttl / 10).as_secs()))
}

/// The service's certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// Where its certificate is, for clients to trust (`slicectl login --ca-cert`).
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// A certificate issued to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub pem: String,
    /// Serial number, hex.
    pub serial: String,
    /// Validity, epoch milliseconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// What a node's client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The node it names (common name), or the cluster when `cluster` is set.
    pub node: String,
    /// A cluster agent's certificate (organization `CLUSTER_ORG`).
    pub cluster: bool,
    /// Serial number, hex.
    pub serial: String,
    /// End of validity, epoch milliseconds.
    pub expires_at: i64,
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn at_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A random positive serial of 16 bytes whose first byte is never 0, so its DER form (and
/// hence what a peer certificate shows) is exactly these bytes.
fn serial() -> (SerialNumber, String) {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[0] = (b[0] & 0x7f).max(1);
    (SerialNumber::from_slice(&b), hex::encode(b))
}

/// Refuses a private key file that other users may read, or anyone but its owner change
/// (0600; 0640 lets the service's group read it, as `at_rest` allows for the TLS key).
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        anyhow::bail!(
            "{} is a private key others may read or change (mode {mode:o}); \
             run `chmod 600 {}` and start again",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<String> {
    check_private(path)?;
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

impl Ca {
    /// A new CA in memory: (certificate PEM, key PEM).
    pub fn generate(now_ms: i64) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Slicebed service CA");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = at_ms(now_ms) - BACKDATE;
        p.not_after = at_ms(now_ms) + CA_LIFE;
        p.serial_number = Some(serial().0);
        let cert = p.self_signed(&key).context("signing the CA certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CA from PEM texts.
    pub fn from_pem(cert_pem: &str, key_pem: &str, cert_path: PathBuf) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem).context("reading the CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).context("reading the CA certificate")?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_path,
        })
    }

    /// The CA given in the configuration (`--ca-cert`/`--ca-key`), or the one in the data
    /// directory (`ca.crt`, `ca.key` with mode 0600), created there on first start.
    pub fn open(cfg: &Config, now_ms: i64) -> anyhow::Result<Self> {
        let (cert, key) = match (&cfg.ca_cert, &cfg.ca_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => (cfg.data_dir.join("ca.crt"), cfg.data_dir.join("ca.key")),
            _ => anyhow::bail!("--ca-cert and --ca-key go together"),
        };
        let given = cfg.ca_cert.is_some();
        if !given && !cert.exists() && !key.exists() {
            let (c, k) = Self::generate(now_ms)?;
            write_file(&key, &k, 0o600)?;
            write_file(&cert, &c, 0o644)?;
            tracing::info!(ca_cert = %cert.display(), "created the service's certificate authority");
        }
        let key_pem = read_key(&key)?;
        let cert_pem = std::fs::read_to_string(&cert)
            .with_context(|| format!("reading {}", cert.display()))?;
        Self::from_pem(&cert_pem, &key_pem, cert)
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a node's CSR: the certificate names `node` (common name, organization
    /// `NODE_ORG`), is for client authentication only and is valid for `ttl` from `now_ms`.
    /// Everything in the CSR but its public key (and its proof of possession) is ignored.
    pub fn issue_node(
        &self,
        node: &str,
        csr_pem: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<IssuedCert> {
        self.issue_client(node, NODE_ORG, csr_pem, now_ms, ttl)
    }

    /// Signs a cluster agent's CSR: as [`Ca::issue_node`], but the certificate names the
    /// cluster with organization `CLUSTER_ORG`.
    pub fn issue_cluster(
        &self,
        cluster: &str,
        csr_pem: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<IssuedCert> {
        self.issue_client(cluster, CLUSTER_ORG, csr_pem, now_ms, ttl)
    }

    fn issue_client(
        &self,
        node: &str,
        org: &str,
        csr_pem: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<IssuedCert> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            Error::invalid(format!(
                "csr_pem is not a valid certificate signing request: {e}"
            ))
        })?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node);
        dn.push(DnType::OrganizationName, org);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let not_before = at_ms(now_ms) - backdate(ttl);
        let not_after = at_ms(now_ms) + ttl;
        p.not_before = not_before;
        p.not_after = not_after;
        let (sn, serial) = serial();
        p.serial_number = Some(sn);
        let cert = p
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| Error::Internal(format!("signing a node certificate: {e}")))?;
        Ok(IssuedCert {
            pem: cert.pem(),
            serial,
            issued_at: ms(not_before),
            expires_at: ms(not_after),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses), with its key: (cert PEM,
    /// key PEM). Made afresh at every start; the key is only ever in memory.
    pub fn issue_server(&self, names: &[String], now_ms: i64) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate().context("generating the server key")?;
        let mut p = CertificateParams::new(names.to_vec()).context("server certificate names")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "slicebed service");
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.not_before = at_ms(now_ms) - BACKDATE;
        p.not_after = at_ms(now_ms) + SERVER_LIFE;
        p.serial_number = Some(serial().0);
        let cert = p
            .signed_by(&key, &self.issuer)
            .context("signing the server certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Reads the leaf certificate a node presented (DER).
pub fn read_peer(der: &[u8]) -> std::result::Result<PeerCert, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let node = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the client certificate names no node (no common name)")?
        .to_string();
    let org = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok());
    let cluster = match org {
        Some(NODE_ORG) => false,
        Some(CLUSTER_ORG) => true,
        _ => return Err("the client certificate is not a node certificate".into()),
    };
    Ok(PeerCert {
        node,
        cluster,
        serial: hex::encode(cert.raw_serial()),
        expires_at: cert.validity().not_after.timestamp().saturating_mul(1000),
    })
}

/// Names the `--tls auto` server certificate carries: loopback names, the listening address
/// when it is a specific one, this host's name, and `tls_names` from the configuration.
fn server_names(cfg: &Config, addr: SocketAddr) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    names.extend(cfg.tls_names.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// The server's TLS configuration, or `None` for plaintext, which is refused off loopback
/// unless `insecure`. Client certificates are asked for but optional: researchers
/// authenticate with bearer tokens; the node API checks the certificate itself.
pub fn server_tls(
    cfg: &Config,
    ca: &Ca,
    addr: SocketAddr,
) -> anyhow::Result<Option<ServerTlsConfig>> {
    let identity = match &cfg.tls {
        TlsMode::Off => {
            if !addr.ip().is_loopback() && !cfg.insecure {
                anyhow::bail!(
                    "refusing to serve plaintext on {addr}, which is not a loopback address: \
                     use --tls auto (the default) or --tls-cert/--tls-key, or pass --insecure"
                );
            }
            return Ok(None);
        }
        TlsMode::Auto => {
            let (cert, key) = ca.issue_server(&server_names(cfg, addr), now_ms())?;
            Identity::from_pem(cert, key)
        }
        TlsMode::Files { cert, key } => {
            let key = read_key(key)?;
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            Identity::from_pem(cert, key)
        }
    };
    Ok(Some(
        ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(ca.cert_pem()))
            .client_auth_optional(true),
    ))
}

fn now_ms() -> i64 {
    crate::model::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Ca {
        let (c, k) = Ca::generate(now_ms()).unwrap();
        Ca::from_pem(&c, &k, "ca.crt".into()).unwrap()
    }

    fn csr(cn: &str) -> String {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn der(pem: &str) -> Vec<u8> {
        ::pem::parse(pem).unwrap().into_contents()
    }

    #[test]
    fn a_node_certificate_names_the_node_not_what_the_csr_asks() {
        let ca = ca();
        let now = now_ms();
        let c = ca
            .issue_node("n1", &csr("admin"), now, Duration::from_secs(7 * 86_400))
            .unwrap();
        let peer = read_peer(&der(&c.pem)).unwrap();
        assert_eq!(peer.node, "n1");
        assert!(!peer.cluster, "a node certificate is not a cluster's");
        let k = ca
            .issue_cluster("lab", &csr("lab"), now, Duration::from_secs(60))
            .unwrap();
        let kp = read_peer(&der(&k.pem)).unwrap();
        assert_eq!((kp.node.as_str(), kp.cluster), ("lab", true));
        assert_eq!(peer.serial, c.serial);
        assert_eq!(peer.expires_at, c.expires_at);
        assert!(c.expires_at - now >= 7 * 86_400_000 - 1000);
        assert!(c.issued_at < now);
        let d = der(&c.pem);
        let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        // A second certificate gets another serial.
        let d = ca
            .issue_node("n1", &csr("n1"), now, Duration::from_secs(60))
            .unwrap();
        assert_ne!(c.serial, d.serial);
    }

    #[test]
    fn garbage_and_forged_csrs_are_refused() {
        let ca = ca();
        let e = ca
            .issue_node("n1", "not a csr", now_ms(), Duration::from_secs(60))
            .unwrap_err();
        assert!(e.to_string().contains("csr_pem"), "{e}");
        // A CSR whose signature does not match its key (a tampered body) is refused.
        let good = csr("n1");
        let mut d = der(&good);
        let n = d.len();
        d[n - 1] ^= 0xff;
        let bad = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", d));
        assert!(ca
            .issue_node("n1", &bad, now_ms(), Duration::from_secs(60))
            .is_err());
    }

    #[test]
    fn server_certificates_are_not_node_certificates() {
        let ca = ca();
        let (cert, _) = ca.issue_server(&["localhost".into()], now_ms()).unwrap();
        let e = read_peer(&der(&cert)).unwrap_err();
        assert!(e.contains("not a node certificate"), "{e}");
    }

    #[test]
    fn a_ca_created_in_a_data_dir_is_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::for_data_dir(dir.path());
        let a = Ca::open(&cfg, now_ms()).unwrap();
        let key = dir.path().join("ca.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Ca::open(&cfg, now_ms()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem(), "the same CA on the next start");
        // The reloaded CA signs certificates that chain to the same certificate.
        let c = b
            .issue_node("n1", &csr("n1"), now_ms(), Duration::from_secs(60))
            .unwrap();
        let (ca_d, d) = (der(a.cert_pem()), der(&c.pem));
        let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_d).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
        x.verify_signature(Some(ca_x.public_key())).unwrap();
        // A key readable by others is refused, naming the file.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Ca::open(&cfg, now_ms()).unwrap_err().to_string();
        assert!(e.contains("ca.key") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn plaintext_is_refused_off_loopback_unless_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path());
        cfg.tls = TlsMode::Off;
        let ca = ca();
        let lo: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7443".parse().unwrap();
        assert!(server_tls(&cfg, &ca, lo).unwrap().is_none());
        let e = server_tls(&cfg, &ca, any).unwrap_err().to_string();
        assert!(e.contains("--insecure"), "{e}");
        cfg.insecure = true;
        assert!(server_tls(&cfg, &ca, any).unwrap().is_none());
        cfg.tls = TlsMode::Auto;
        cfg.insecure = false;
        assert!(server_tls(&cfg, &ca, any).unwrap().is_some());
    }

    #[test]
    fn a_given_tls_key_readable_by_all_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let (cert, key) = ca.issue_server(&["localhost".into()], now_ms()).unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cfg = Config::for_data_dir(dir.path());
        cfg.tls = TlsMode::Files {
            cert: c,
            key: k.clone(),
        };
        let lo: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        let e = server_tls(&cfg, &ca, lo).unwrap_err().to_string();
        assert!(e.contains("tls.key"), "{e}");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(server_tls(&cfg, &ca, lo).unwrap().is_some());
    }
}
