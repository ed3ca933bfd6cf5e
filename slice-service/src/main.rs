//! `slice-service` binary: flags, logging, signals; everything else is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use slice_service::trace::otlp;

/// Slicebed's central slice-creation service.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address goes to <data-dir>/service.addr).
    /// [default: 127.0.0.1:7443]
    #[arg(long)]
    listen: Option<String>,
    /// Directory for the embedded database, the bootstrap admin token and runtime files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlx database URL (default sqlite://<data-dir>/slicebed.db); postgres://... for production.
    #[arg(long, env = "SLICEBED_DATABASE_URL")]
    database_url: Option<String>,
    /// TOML configuration file; unknown keys are errors.
    #[arg(long)]
    config: Option<PathBuf>,
    /// TLS certificate chain (PEM), with --tls-key; otherwise see --tls.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); must be mode 0600.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// `auto` (default): serve TLS with a certificate from the service's own CA
    /// (<data-dir>/ca.crt: clients trust it with `slicectl login --ca-cert`); `off`: plaintext,
    /// loopback only unless --insecure (nodes then cannot connect: they need mutual TLS).
    #[arg(long, value_parser = ["auto", "off"])]
    tls: Option<String>,
    /// Allow plaintext (--tls off) on an address that is not loopback.
    #[arg(long)]
    insecure: bool,
    /// CA certificate (PEM) that signs node certificates, with --ca-key; default
    /// <data-dir>/ca.crt, created on first start.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM); must be mode 0600.
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP) on this address; off by default.
    /// Port 0 picks a free port (written to <data-dir>/metrics.addr).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Serve the web status page (plain HTTP) on this address; off by default. Port 0 picks a
    /// free port (written to <data-dir>/web.addr); off loopback it needs --insecure.
    #[arg(long, value_name = "ADDR")]
    web_listen: Option<String>,
    /// Export a span per gRPC call to this OpenTelemetry collector (OTLP over gRPC, e.g.
    /// http://127.0.0.1:4317); off by default.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Serve the image store read-only over the OCI Distribution API (/v2/, plain HTTP) on this
    /// address; off by default. Port 0 picks a free port (written to <data-dir>/registry.addr);
    /// off loopback it needs --insecure (put TLS in front: docs/images.md).
    #[arg(long, value_name = "ADDR")]
    registry_listen: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let log_json = args.log_json;
    // The configuration first: it says whether spans are exported, which the logging set-up
    // needs to know. Nothing before this point logs.
    let cfg = match config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let exporter = match cfg.otlp_endpoint.as_deref().map(otlp::Exporter::start) {
        None => None,
        Some(Ok(x)) => Some(x),
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    init_logging(log_json, exporter.as_ref());
    let result = start(cfg).await;
    if let Some(x) = exporter {
        x.shutdown().await;
    }
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Log lines to stderr (text, or JSON lines), filtered by RUST_LOG; spans also to the OTLP
/// exporter when there is one.
fn init_logging(json: bool, exporter: Option<&otlp::Exporter>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.with_ansi(ansi).boxed()
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(exporter.map(|x| x.layer()))
        .with(filter)
        .init();
}

fn config(args: Args) -> anyhow::Result<slice_service::Config> {
    let file = match &args.config {
        Some(p) => slice_service::config::read_file(p)?,
        None => Default::default(),
    };
    let flags = slice_service::config::Flags {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls: args.tls,
        insecure: args.insecure,
        ca_cert: args.ca_cert,
        ca_key: args.ca_key,
        metrics_listen: args.metrics_listen,
        web_listen: args.web_listen,
        otlp_endpoint: args.otlp_endpoint,
        registry_listen: args.registry_listen,
    };
    slice_service::Config::merge(flags, file)
}

async fn start(cfg: slice_service::Config) -> anyhow::Result<()> {
    let listen = cfg.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    slice_service::run(cfg, listener, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
