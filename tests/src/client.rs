//! gRPC clients with a bearer token and, for the node API, a client certificate, over TLS.

use slicebed_proto::v1::{
    admin_service_client::AdminServiceClient, node_service_client::NodeServiceClient,
    slice_service_client::SliceServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::node::NodeCredential;
use crate::Service;

/// The interceptor every client of the workspace uses.
pub use slicebed_proto::auth::Bearer;

type Svc = InterceptedService<Channel, Bearer>;

/// The three API clients for one token.
#[derive(Clone)]
pub struct Clients {
    pub slices: SliceServiceClient<Svc>,
    pub admin: AdminServiceClient<Svc>,
    pub node: NodeServiceClient<Svc>,
}

/// Opens a channel to the service (TLS when it has a certificate).
pub async fn channel(svc: &Service) -> Channel {
    channel_as(svc, None)
        .await
        .expect("connect to slice-service")
}

/// Opens a channel presenting `identity` as the client certificate, if given.
pub async fn channel_as(
    svc: &Service,
    identity: Option<&NodeCredential>,
) -> Result<Channel, tonic::transport::Error> {
    let mut ep = Channel::from_shared(svc.url())
        .expect("url")
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20);
    if let Some(ca) = svc.ca_cert() {
        let pem = std::fs::read(ca).unwrap();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        ep = ep.tls_config(tls).expect("tls");
    }
    ep.connect().await
}

impl Clients {
    /// Clients acting with `token` (None = no credentials at all).
    pub async fn new(svc: &Service, token: Option<&str>) -> Self {
        let ch = channel(svc).await;
        let b = token.map_or_else(Bearer::anonymous, |t| Bearer::new(t).expect("ascii token"));
        Self {
            slices: SliceServiceClient::with_interceptor(ch.clone(), b.clone()),
            admin: AdminServiceClient::with_interceptor(ch.clone(), b.clone()),
            node: NodeServiceClient::with_interceptor(ch, b),
        }
    }

    /// Clients presenting a node's client certificate, with `token` (usually none).
    pub async fn with_identity(
        svc: &Service,
        token: Option<&str>,
        id: &NodeCredential,
    ) -> Result<Self, tonic::transport::Error> {
        let ch = channel_as(svc, Some(id)).await?;
        let b = token.map_or_else(Bearer::anonymous, |t| Bearer::new(t).expect("ascii token"));
        Ok(Self {
            slices: SliceServiceClient::with_interceptor(ch.clone(), b.clone()),
            admin: AdminServiceClient::with_interceptor(ch.clone(), b.clone()),
            node: NodeServiceClient::with_interceptor(ch, b),
        })
    }

    /// Clients acting as the bootstrap admin.
    pub async fn admin(svc: &Service) -> Self {
        Self::new(svc, Some(&svc.admin_token)).await
    }
}
