//! Enrollment: create the node's key, trade a one-time token and a CSR for a client
//! certificate, and write the state dir. The key never leaves the node. The state dir is
//! checked before the token is spent, so a refused overwrite costs nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use slicebed_proto::v1 as pb;

use crate::connect::{channel, node_client};
use crate::domain::{PortRange, Resources};
use crate::error::{Error, Result};
use crate::node_files::{self, NodeConfig};

/// Everything `enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollParams {
    /// Service URL.
    pub server: String,
    /// One-time enrollment token.
    pub token: String,
    /// Desired node name.
    pub name: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// Address researchers use to reach published ports.
    pub address: String,
    /// Capacity offered.
    pub capacity: Resources,
    /// Host ports lent.
    pub port_range: PortRange,
    /// Placement labels.
    pub labels: BTreeMap<String, String>,
    /// CA certificate to trust for the service.
    pub ca_cert: Option<PathBuf>,
    /// Replace an existing enrollment.
    pub force: bool,
    /// Enroll a cluster agent (`name` is the cluster's), not a node.
    pub cluster: bool,
}

/// Enrolls and saves the state dir; returns the saved config.
pub async fn enroll(p: EnrollParams) -> Result<NodeConfig> {
    if !p.force {
        let existing = node_files::load_config(&p.state_dir)?;
        if existing.is_some()
            || p.state_dir.join(node_files::CREDENTIAL_FILE).exists()
            || p.state_dir.join(crate::identity::KEY_FILE).exists()
        {
            return Err(Error::AlreadyEnrolled {
                dir: p.state_dir.clone(),
                node: existing.map_or_else(|| "?".to_string(), |c| c.node),
            });
        }
    }
    // Stored absolute: `run` may start from another working directory.
    let ca_cert = match &p.ca_cert {
        Some(path) => Some(
            std::fs::canonicalize(path).map_err(|source| Error::StateFile {
                action: "read CA certificate",
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    if !p.server.starts_with("https://") {
        return Err(Error::Identity(format!(
            "{} is plain HTTP, but nodes speak only mutual TLS: use the service's https:// URL \
             (and --ca-cert with the CA it prints)",
            p.server
        )));
    }
    let key_pem = crate::identity::new_key()?;
    let csr_pem = crate::identity::csr(&key_pem, &p.name)?;
    let mut client = node_client(
        channel(&p.server, ca_cert.as_deref(), None).await?,
        &p.token,
    )?;
    let req = tonic::Request::new(pb::EnrollRequest {
        name: p.name.clone(),
        address: p.address.clone(),
        capacity: Some(crate::convert::resources_to_pb(p.capacity)),
        port_range: Some(p.port_range.into()),
        labels: p.labels.clone().into_iter().collect(),
        agent_version: crate::AGENT_VERSION.to_string(),
        csr_pem,
        cluster: p.cluster,
    });
    let resp = client
        .enroll(req)
        .await
        .map_err(|s| Error::from_status("enroll", s))?
        .into_inner();
    let config = NodeConfig {
        server: p.server,
        node: if resp.node.is_empty() {
            p.name
        } else {
            resp.node
        },
        site: resp.site,
        ca_cert,
        capacity: p.capacity,
        port_range: p.port_range,
        labels: p.labels,
        address: p.address,
        cluster: resp.cluster,
    };
    if p.cluster && !config.cluster {
        return Err(Error::Identity(
            "the service enrolled a node, not a cluster (is it older than this node manager?)"
                .into(),
        ));
    }
    let cert_pem = resp
        .certificate
        .map(|c| c.certificate_pem)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::Identity(
                "the service sent no certificate (is it older than this node manager?)".into(),
            )
        })?;
    crate::identity::validity(&cert_pem)?;
    let identity = crate::identity::NodeIdentity { key_pem, cert_pem };
    node_files::save(&p.state_dir, &config, &identity)?;
    Ok(config)
}
