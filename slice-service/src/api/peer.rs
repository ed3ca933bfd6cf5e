//! Who a node API call speaks for: the client certificate of its TLS connection (mutual TLS;
//! checked against the service's records by `Core::speaker`) and, for a cluster agent, the
//! member its metadata names. Never a bearer token.

use crate::core::{Core, Speaker};
use crate::error::Error;
use tonic::Status;

/// The gRPC metadata in which a cluster agent names the member node a call speaks for.
pub const MEMBER_HEADER: &str = "x-slicebed-member";

/// Who a request speaks for, from the client certificate of its TLS connection and, for a
/// cluster agent, the member its metadata names (`MEMBER_HEADER`).
pub(super) async fn peer(
    core: &Core,
    meta: &tonic::metadata::MetadataMap,
    ext: &tonic::Extensions,
) -> Result<(Speaker, crate::pki::PeerCert), Status> {
    use tonic::transport::server::TlsConnectInfo;
    let certs = ext
        .get::<TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|t| t.peer_certs());
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return Err(Error::Unauthenticated(
            "the node API needs the node's client certificate (mutual TLS); bearer node \
             credentials (sbn_) are no longer accepted: enroll the node again with a new \
             enrollment token (node-manager enroll --force)"
                .into(),
        )
        .into());
    };
    let p = crate::pki::read_peer(leaf).map_err(Error::Unauthenticated)?;
    let member = match meta.get(MEMBER_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| {
            Error::invalid(format!(
                "{MEMBER_HEADER} must be a Kubernetes node name (ASCII)"
            ))
        })?),
        None => None,
    };
    let who = core.speaker(&p, member).await?;
    match &who.cluster {
        Some(c) => crate::trace::record_principal(&format!("cluster/{c}/node/{}", who.node)),
        None => crate::trace::record_principal(&format!("node/{}", who.node)),
    }
    Ok((who, p))
}

/// The node a data call (Session, FetchBlob) speaks for: it must exist already (a member
/// exists once it said Hello on its control channel).
pub(super) async fn peer_node(
    core: &Core,
    meta: &tonic::metadata::MetadataMap,
    ext: &tonic::Extensions,
) -> Result<String, Status> {
    let (who, _) = peer(core, meta, ext).await?;
    if who.existing.is_none() {
        return Err(Error::Precondition(format!(
            "member node {} has not opened its control channel yet",
            who.node
        ))
        .into());
    }
    Ok(who.node)
}
