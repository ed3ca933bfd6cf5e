//! The tower layer that gives every gRPC call a `tracing` span and a request id.
//!
//! The id is taken from a well-formed `x-request-id` on the request or generated
//! ([`RequestId`]), put back on the request (so handlers see only the sanitised one) and in its
//! extensions, and returned in the `x-request-id` header of EVERY response: a trailers-only
//! error (tonic's answer to any error before a stream starts) carries its status in those same
//! headers, so a client finds the id in `Status::metadata()`. The id is also added to the
//! trailers that end a stream, for errors that come after the first message.
//!
//! The span (`rpc`) holds service, method (from the served descriptors, never the raw path),
//! request id and, once the handler has authenticated, the caller's principal. It is entered
//! while the handler runs and while the response body is polled, so every log line of the call
//! carries the id. At the end of the call (trailers-only head, trailers, or the body dropped)
//! it records the final code and the elapsed time, and one line is logged: DEBUG for OK, INFO
//! for errors of the caller's making, WARN for the service's own failures.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::field::Empty;
use tracing::Instrument;

use super::body::{End, TracedBody};
use super::id::{RequestId, HEADER};
use crate::metrics::grpc::{code_name, method_of};

/// Tower layer: wrap the server's services so every call is traced (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer {
    /// Also fill the `otel.*` fields that name and classify the span for OpenTelemetry; off
    /// when nothing is exported, so log lines stay short.
    otel: bool,
}

impl TraceLayer {
    /// A layer; `otel` when spans are exported over OTLP.
    pub fn new(otel: bool) -> Self {
        Self { otel }
    }
}

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            otel: self.otel,
        }
    }
}

/// See [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
    otel: bool,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Traced<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body + Send + 'static,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let id = RequestId::of_request(req.headers());
        let value = id.header_value();
        req.headers_mut().insert(HEADER, value.clone());
        let (service, method) = method_of(req.uri().path());
        let span = tracing::info_span!(
            "rpc",
            service = %service,
            method = %method,
            request_id = %id,
            principal = Empty,
            code = Empty,
            elapsed_ms = Empty,
            otel.name = Empty,
            otel.kind = Empty,
            otel.status_code = Empty,
        );
        if self.otel {
            span.record("otel.name", format!("{service}/{method}"));
            span.record("otel.kind", "server");
        }
        req.extensions_mut().insert(id);
        let mut end = End {
            span: span.clone(),
            start: Instant::now(),
            otel: self.otel,
            done: false,
        };
        let fut = span.in_scope(|| self.inner.call(req));
        let body_span = span.clone();
        Box::pin(
            async move {
                let mut res = match fut.await {
                    Ok(res) => res,
                    Err(e) => {
                        end.finish("Unknown");
                        return Err(e);
                    }
                };
                res.headers_mut().insert(HEADER, value.clone());
                // Trailers-only (errors before any message): the status is in the headers.
                let end = match res.headers().get("grpc-status") {
                    Some(v) => {
                        end.finish(code_name(Some(v.as_bytes())));
                        None
                    }
                    None => Some(end),
                };
                Ok(res.map(|inner| TracedBody {
                    inner: Box::pin(inner),
                    span: body_span,
                    id: value,
                    end,
                }))
            }
            .instrument(span),
        )
    }
}
