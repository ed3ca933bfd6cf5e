//! Export of the call spans to an OpenTelemetry collector over OTLP/gRPC (`--otlp-endpoint URL`,
//! `[tracing] otlp_endpoint`). Off by default: without an endpoint nothing here is built, so
//! no exporter thread runs and nothing leaves the process.
//!
//! Spans are batched by the SDK's exporter thread and sent with the workspace's own tonic; the
//! resource names the service (`service.name = slice-service`) and its version. `shutdown`
//! flushes what is still buffered. An export that fails (collector down) is the SDK's to
//! report and drop: it must never slow or fail a call.

use anyhow::{bail, Context as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;

/// The `service.name` resource attribute of every exported span.
pub const SERVICE_NAME: &str = "slice-service";

/// Checks an endpoint before anything starts: an `http://` or `https://` URL with a host.
/// `source` names where it came from (`--otlp-endpoint`, `tracing.otlp_endpoint`), so the error
/// says which setting to fix.
pub fn check_endpoint(source: &str, url: &str) -> anyhow::Result<()> {
    let shape = "expected the URL of an OTLP/gRPC collector, such as http://127.0.0.1:4317";
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => bail!("{source} {url:?} is not a URL ({shape})"),
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => bail!("{source} {url:?}: scheme {other:?} is not http or https ({shape})"),
        None => bail!("{source} {url:?} has no scheme ({shape})"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("{source} {url:?} has no host ({shape})");
    }
    Ok(())
}

/// A running exporter. Must be started inside the tokio runtime (the exporter's connection
/// lives there); `shutdown` before the process exits, or the last spans are lost.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `endpoint` (already checked with [`check_endpoint`]).
    pub fn start(endpoint: &str) -> anyhow::Result<Self> {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
        }
        let exporter = builder
            .build()
            .with_context(|| format!("--otlp-endpoint {endpoint:?}: cannot set up the exporter"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that hands finished spans to the exporter.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(SERVICE_NAME))
    }

    /// Flushes the buffered spans and stops the exporter thread. Blocking work, done off the
    /// runtime's workers so the export it waits for can still run on them.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let r = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: flushing spans to the OTLP collector failed: {e}"),
            Err(e) => eprintln!("warning: flushing spans to the OTLP collector failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_pass() {
        for ok in [
            "http://127.0.0.1:4317",
            "https://collector.example.org:4317",
            "http://[::1]:4317/",
            "http://otel",
        ] {
            check_endpoint("--otlp-endpoint", ok).unwrap();
        }
    }

    #[test]
    fn bad_endpoints_name_the_setting_and_the_value() {
        for (bad, why) in [
            ("127.0.0.1:4317", "scheme"),
            ("localhost", "no scheme"),
            ("ftp://h:1", "scheme \"ftp\""),
            ("http://", "not a URL"),
            ("not a url", "not a URL"),
            ("", "not a URL"),
        ] {
            let e = check_endpoint("--otlp-endpoint", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--otlp-endpoint "), "{bad}: {e}");
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("http://127.0.0.1:4317"), "{bad}: {e}");
        }
    }
}
