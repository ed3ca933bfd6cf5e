//! Slicebed's central slice-creation service: tenants, sites, nodes, slices, slivers, leases
//! and events; the scheduler; the server side of the node control channel.
//!
//! `run` serves the API on a listener until `shutdown` resolves; `main.rs` only parses flags.

pub mod api;
pub mod at_rest;
pub mod auth;
pub mod clock;
pub mod config;
pub mod core;
pub mod error;
pub mod hub;
pub mod images;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod names;
pub mod pki;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod trace;
pub mod untrusted;
pub mod usage;
pub mod web;

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use slicebed_proto::v1::{
    access_service_server::AccessServiceServer, admin_service_server::AdminServiceServer,
    image_service_server::ImageServiceServer, node_service_server::NodeServiceServer,
    slice_service_server::SliceServiceServer, FILE_DESCRIPTOR_SET,
};
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::Config;

/// Largest message a client may send on the access API (chunks are documented as <= 1 MiB).
const MAX_MESSAGE: usize = 2 << 20;

/// Largest message on the image API: a 1 MiB chunk, or a manifest of up to 4 MiB.
const MAX_IMAGE_MESSAGE: usize = 5 << 20;

/// How long in-flight calls may run after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves slicebed.v1 on `listener` until `shutdown` resolves.
///
/// On first start it creates the bootstrap admin and writes its token to
/// `<data-dir>/admin.token` (mode 0600); the log names the file, never the token. The bound
/// address is written to `<data-dir>/service.addr` for scripts and tests that listen on port 0.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    // Before the database opens: it must never exist readable by other local users.
    let db_file = at_rest::sqlite_file(&cfg.database_url);
    at_rest::secure(&cfg.data_dir, db_file.as_deref(), cfg.tls_key.as_deref())?;
    let db = store::Db::open_with(&cfg.database_url, cfg.limits.sqlite_read_connections)
        .await
        .context("opening the database")?;
    let core = core::Core::new(db.clone(), cfg.clone());
    if let Some(secret) = core
        .bootstrap()
        .await
        .context("bootstrapping the admin user")?
    {
        let path = cfg.data_dir.join("admin.token");
        write_private(&path, &secret)?;
        tracing::info!(path = %path.display(), "bootstrap admin token written");
    } else {
        // The kept admin token expires (admin_token_ttl); it is renewed in place near its end,
        // here and hourly by the reapers.
        core.refresh_kept_admin_token()
            .await
            .context("renewing the kept admin token")?;
    }

    // The image store holds the base image from the start (built from a static busybox).
    core.ensure_base_image()
        .await
        .context("storing the base image")?;

    let addr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SliceServiceServer<api::Api>>().await;
    health.set_serving::<AdminServiceServer<api::Api>>().await;
    health.set_serving::<NodeServiceServer<api::Api>>().await;
    health.set_serving::<AccessServiceServer<api::Api>>().await;
    health.set_serving::<ImageServiceServer<api::Api>>().await;
    // Reflection in both versions: grpcurl and current clients speak v1, while stock clients
    // such as Python's grpcio-reflection and older grpcurl still speak v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("building reflection")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection")?;

    let api = api::Api::new(core.clone());
    // Connections are capped and timed; every call is counted against its connection, so
    // idle ones can be closed (listener.rs).
    let conn_limits = listener::ConnLimits {
        max_connections: cfg.limits.max_connections,
        first_request_timeout: cfg.limits.first_request_timeout,
        idle_timeout: cfg.limits.idle_timeout,
    };
    let (incoming, track_calls) = listener::incoming(listener, conn_limits);
    // Operator metrics: calls counted by a layer; state gauges computed at each scrape.
    let metrics = metrics::Metrics::new();
    let _ = core.placement_metrics.set(metrics.placement());
    let metrics_task = match &cfg.metrics_listen {
        Some(at) => {
            let src = metrics::Sources {
                core: core.clone(),
                streams: api.stream_limits(),
                connections: Some(track_calls.clone()),
            };
            Some(metrics::start(at, &cfg.data_dir, metrics.clone(), src).await?)
        }
        None => None,
    };
    // The web status page on its own listener, under the same connection caps.
    let web_task = match &cfg.web_listen {
        Some(at) => Some(
            web::start(
                at,
                cfg.insecure,
                &cfg.data_dir,
                core.clone(),
                api.stream_limits(),
                conn_limits,
            )
            .await?,
        ),
        None => None,
    };
    // The image store read-only over the OCI Distribution API, on its own listener.
    let registry_task = match &cfg.registry_listen {
        Some(at) => Some(
            images::registry::start(
                at,
                cfg.insecure,
                &cfg.data_dir,
                cfg.registry_advertise.as_deref(),
                core.clone(),
                conn_limits,
            )
            .await?,
        ),
        None => None,
    };
    let mut server = Server::builder()
        .layer(track_calls)
        .layer(metrics.grpc_layer())
        // A span and a request id per call, the id returned on every answer (trace/).
        .layer(trace::TraceLayer::new(cfg.otlp_endpoint.is_some()));
    // The node CA, and TLS asking for (optional) client certificates (pki.rs).
    let ca = std::sync::Arc::new(pki::Ca::open(&cfg, core.now_ms())?);
    let _ = core.ca.set(ca.clone());
    let tls = match pki::server_tls(&cfg, &ca, addr)? {
        Some(t) => {
            server = server.tls_config(t)?;
            tracing::info!(ca_cert = %ca.cert_path.display(),
                "clients trust this CA: slicectl login --ca-cert PATH; node-manager enroll --ca-cert PATH");
            true
        }
        None => false,
    };
    let reapers = core::spawn_reapers(core.clone());
    let image_gc = images::spawn_gc(core.clone());
    let addr_file = cfg.data_dir.join("service.addr");
    std::fs::write(&addr_file, addr.to_string())
        .with_context(|| format!("writing {}", addr_file.display()))?;
    tracing::info!(%addr, tls, data_dir = %cfg.data_dir.display(), "slice-service listening");

    // Graceful shutdown waits for open streams; node control channels would hold it forever,
    // so after the signal in-flight calls get a grace period and then the server stops.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(());
    };
    let serve = server
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        // Session relays carry bulk copies; grow HTTP/2 windows past the 64 KiB default.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SliceServiceServer::new(api.clone()))
        .add_service(AdminServiceServer::new(api.clone()))
        .add_service(AccessServiceServer::new(api.clone()).max_decoding_message_size(MAX_MESSAGE))
        .add_service(
            ImageServiceServer::new(api.clone()).max_decoding_message_size(MAX_IMAGE_MESSAGE),
        )
        .add_service(NodeServiceServer::new(api))
        .serve_with_incoming_shutdown(incoming, shutdown);
    let result = tokio::select! {
        r = serve => r,
        _ = async {
            let _ = stop_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("grace period over; closing remaining connections");
            Ok(())
        }
    };
    reapers.abort();
    image_gc.abort();
    if let Some(t) = registry_task {
        t.abort();
        let _ = std::fs::remove_file(cfg.data_dir.join(images::registry::ADDR_FILE));
    }
    if let Some(t) = metrics_task {
        t.abort();
        let _ = std::fs::remove_file(cfg.data_dir.join("metrics.addr"));
    }
    if let Some(t) = web_task {
        t.abort();
        let _ = std::fs::remove_file(cfg.data_dir.join(web::ADDR_FILE));
    }
    let _ = std::fs::remove_file(&addr_file);
    db.close().await;
    tracing::info!("slice-service stopped");
    result.context("serving gRPC")
}

/// Writes a secret to a file created with mode 0600, so it is never readable by others.
fn write_private(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}
