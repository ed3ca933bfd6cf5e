//! A throwaway CA and a server certificate for the listen address, so clients reach the fake
//! over HTTPS and verify it with the CA the kubeconfig carries, as with a real cluster.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub struct Tls {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

pub fn generate(ip: IpAddr) -> anyhow::Result<Tls> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "slicebed-fake-kube CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("reading the CA back")?;

    let key = KeyPair::generate().context("generating the server key")?;
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "kubernetes".to_string()])
        .context("server certificate names")?;
    p.distinguished_name
        .push(DnType::CommonName, "slicebed-fake-kube");
    p.subject_alt_names.push(SanType::IpAddress(ip));
    let cert = p
        .signed_by(&key, &issuer)
        .context("signing the server certificate")?;

    let provider = Arc::new(ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .context("TLS server configuration")?;
    // HTTP/1.1 only: watches and log follows are chunked HTTP/1.1 responses.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}
