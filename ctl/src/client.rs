//! Connecting to slice-service: URL normalisation, optional TLS with a private CA, and the
//! workspace's bearer interceptor on every client.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use slicebed_proto::auth::Bearer;
use slicebed_proto::v1::{
    access_service_client::AccessServiceClient, admin_service_client::AdminServiceClient,
    image_service_client::ImageServiceClient, slice_service_client::SliceServiceClient,
};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::{config::Settings, errors};

/// A channel with authentication.
pub type Authed = InterceptedService<Channel, Bearer>;

/// The API clients.
#[derive(Clone)]
pub struct Clients {
    pub slices: SliceServiceClient<Authed>,
    pub admin: AdminServiceClient<Authed>,
    /// Exec, logs, copy and endpoints. Its own lazily opened connection without the per-request
    /// timeout: an upload is answered only once its last byte is in, and a shell or `logs -f`
    /// lasts as long as the person wants.
    pub access: AccessServiceClient<Authed>,
    /// WatchEvents, on the same untimed connection as `access`: an event stream stays open for
    /// as long as someone watches, which the 60 s request timeout of `slices` would cut short.
    pub watch: SliceServiceClient<Authed>,
    /// The image store, on the untimed connection too: a push of a large image takes as long
    /// as the link needs.
    pub images: ImageServiceClient<Authed>,
    /// The URL connected to, for messages.
    pub server: String,
}

/// `host:port` → `http://host:port` (or `https://` when a CA certificate is given).
pub fn normalize_url(server: &str, tls: bool) -> String {
    let s = server.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_string()
    } else if tls {
        format!("https://{s}")
    } else {
        format!("http://{s}")
    }
}

/// Connects eagerly, so that a dead server is reported before anything else happens.
pub async fn connect(settings: &Settings) -> Result<Clients> {
    let token = settings
        .token
        .as_deref()
        .context("no token given: pass --token, set SLICECTL_TOKEN, or run slicectl login")?;
    let auth = Bearer::new(token.trim()).map_err(|_| {
        anyhow::anyhow!("the token contains characters that cannot be sent in a header")
    })?;
    let auth = auth
        .clone()
        .with_request_id(errors::run_request_id())
        .unwrap_or(auth);
    let url = normalize_url(&settings.server, settings.ca_cert.is_some());
    errors::set_server(&url);
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|_| anyhow::anyhow!("invalid server URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        // Small replies must not wait for delayed ACKs (Nagle). tonic 0.14 already defaults to
        // nodelay (`Endpoint::new` sets `tcp_nodelay: true` and its HttpConnector applies it to
        // every dialed stream; no custom connector here); said explicitly so no default change
        // can bring back 40 ms stalls.
        .tcp_nodelay(true)
        // Bulk copies need HTTP/2 windows larger than the 64 KiB default to keep a long or
        // busy path full; fixed 4 MiB stream windows keep it full.
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20);
    if let Some(ca) = &settings.ca_cert {
        if url.starts_with("http://") {
            bail!("--ca-cert needs an https:// server URL, got {url}");
        }
        let pem = std::fs::read(ca)
            .with_context(|| format!("cannot read CA certificate {}", ca.display()))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .with_context(|| format!("cannot use CA certificate {}", ca.display()))?;
    } else if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new())
            .context("cannot set up TLS")?;
    }
    let streams = endpoint.connect_lazy();
    let channel = endpoint
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| unreachable(&url, &e))?;
    Ok(Clients {
        slices: SliceServiceClient::with_interceptor(channel.clone(), auth.clone()),
        admin: AdminServiceClient::with_interceptor(channel, auth.clone()),
        access: AccessServiceClient::with_interceptor(streams.clone(), auth.clone()),
        watch: SliceServiceClient::with_interceptor(streams.clone(), auth.clone()),
        images: ImageServiceClient::with_interceptor(streams, auth),
        server: url,
    })
}

/// "Connection refused" is the common case and gets the short message; anything else
/// (TLS, DNS, timeouts) keeps its innermost cause.
fn unreachable(url: &str, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return errors::Unreachable {
                    server: url.into(),
                    detail: None,
                }
                .into();
            }
        }
        innermost = s.to_string();
        source = s.source();
    }
    if innermost.contains("certificate") {
        innermost.push_str(" (pass --ca-cert with the CA that signed the service's certificate)");
    }
    errors::Unreachable {
        server: url.into(),
        detail: Some(innermost),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme() {
        assert_eq!(
            normalize_url("127.0.0.1:5000", false),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            normalize_url("slicebed.org:443", true),
            "https://slicebed.org:443"
        );
        assert_eq!(normalize_url("http://a:1/", true), "http://a:1");
    }

    #[tokio::test]
    async fn refused_connections_say_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
            server: format!("127.0.0.1:{port}"),
            token: Some("t".into()),
            ca_cert: None,
            context: None,
        };
        let err = connect(&settings)
            .await
            .err()
            .expect("nothing listens there");
        assert_eq!(
            errors::describe(&err),
            format!("cannot reach slice-service at http://127.0.0.1:{port} (is it running?)")
        );
    }
}
