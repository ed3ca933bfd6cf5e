//! Dialing the slice service: the node always connects out (it accepts nothing inbound).
//! TLS is used when `node.json` names a CA certificate or the URL is `https://`; the control
//! channel and session streams always use it, presenting the node's client certificate
//! (mutual TLS) instead of any bearer token.

use std::path::Path;
use std::time::Duration;

use slicebed_proto::auth::Bearer;
use slicebed_proto::v1::node_service_client::NodeServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};
use crate::identity::NodeIdentity;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `server`, trusting `ca_cert` (PEM) if given, presenting `identity` (the node's
/// client certificate) if given, which needs TLS.
pub async fn channel(
    server: &str,
    ca_cert: Option<&Path>,
    identity: Option<&NodeIdentity>,
) -> Result<Channel> {
    let url = server.to_string();
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|source| Error::ServerUrl {
            url: url.clone(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        // Small replies must not wait for delayed ACKs (Nagle). tonic 0.14 already defaults to
        // nodelay (`Endpoint::new` sets `tcp_nodelay: true` and its HttpConnector applies it to
        // every dialed stream; no custom connector here); said explicitly so no default change
        // can bring back 40 ms stalls.
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // HTTP/2 pings notice a dead service or a dropped NAT mapping on an idle stream.
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        // Copy sessions stream bulk data; the 64 KiB default window would throttle them.
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20);
    let tls = match ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| Error::StateFile {
                action: "read CA certificate",
                path: path.to_path_buf(),
                source,
            })?;
            Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        }
        None if url.starts_with("https://") => Some(ClientTlsConfig::new().with_enabled_roots()),
        None => None,
    };
    let tls = match (tls, identity) {
        (Some(t), Some(id)) => Some(t.identity(id.tls())),
        (None, Some(_)) => {
            return Err(Error::Identity(format!(
                "{url} is plain HTTP, but nodes speak only mutual TLS: enroll again with an https:// server URL"
            )))
        }
        (t, None) => t,
    };
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|source| Error::Tls {
            url: url.clone(),
            source,
        })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|source| Error::Connect { url, source })
}

/// The gRPC metadata in which a cluster agent names the member node (the Kubernetes node)
/// a call speaks for; the service checks it against the cluster certificate.
pub const MEMBER_HEADER: &str = "x-slicebed-member";

/// What a node manager puts on every call: the bearer token (enrollment only) and, for a
/// cluster agent, the member the call speaks for.
#[derive(Debug, Clone)]
pub struct NodeAuth {
    bearer: Bearer,
    member: Option<MetadataValue<Ascii>>,
}

impl Interceptor for NodeAuth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        self.bearer.apply(&mut req);
        if let Some(m) = &self.member {
            req.metadata_mut().insert(MEMBER_HEADER, m.clone());
        }
        Ok(req)
    }
}

/// A `NodeService` client that puts the node's token (or its member's name) on every call
/// (enrollment, the control channel, session streams and blob fetches alike).
pub type NodeClient = NodeServiceClient<InterceptedService<Channel, NodeAuth>>;

/// A [`NodeClient`] over `channel` sending `token` (the one-time enrollment token or the node
/// credential). The token is checked here, once: one that cannot travel in gRPC metadata is
/// [`Error::BadToken`] before any call is made.
pub fn node_client(channel: Channel, token: &str) -> Result<NodeClient> {
    let bearer = Bearer::new(token).map_err(|_| Error::BadToken)?;
    Ok(NodeServiceClient::with_interceptor(
        channel,
        NodeAuth {
            bearer,
            member: None,
        },
    ))
}

/// A [`NodeClient`] that sends no token: the connection's client certificate says who it
/// is. With `member`, a cluster agent's client speaking for that Kubernetes node.
pub fn identified_client(channel: Channel, member: Option<&str>) -> Result<NodeClient> {
    let member = member
        .map(|m| {
            MetadataValue::try_from(m).map_err(|_| {
                Error::Identity(format!("member name {m:?} cannot travel in gRPC metadata"))
            })
        })
        .transpose()?;
    Ok(NodeServiceClient::with_interceptor(
        channel,
        NodeAuth {
            bearer: Bearer::anonymous(),
            member,
        },
    ))
}
