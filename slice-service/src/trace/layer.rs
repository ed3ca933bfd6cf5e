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

use http::HeaderValue;
use tracing::field::{display, Empty};
use tracing::{Instrument, Span};

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

/// How bad a final status is, for the level of the closing log line and the span's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The caller's doing (bad argument, not found, denied, cancelled...).
    Refused,
    /// The service's own failure: worth an operator's look.
    Failed,
}

pub(crate) fn outcome(code: &str) -> Outcome {
    match code {
        "OK" => Outcome::Ok,
        "Unknown" | "Internal" | "DataLoss" => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

/// A call not yet ended. Dropped before its end (the client went away), it ends `Canceled`.
struct End {
    span: Span,
    start: Instant,
    otel: bool,
    done: bool,
}

impl End {
    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let span = &self.span;
        span.record("code", display(code));
        span.record("elapsed_ms", self.start.elapsed().as_millis() as u64);
        let outcome = outcome(code);
        if self.otel && outcome == Outcome::Failed {
            span.record("otel.status_code", "error");
        }
        match outcome {
            Outcome::Ok => tracing::debug!(parent: span, "call ended"),
            Outcome::Refused => tracing::info!(parent: span, "call refused"),
            Outcome::Failed => tracing::warn!(parent: span, "call failed"),
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.finish("Canceled");
    }
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

/// A response body polled inside its call's span, which adds the request id to its trailers
/// and ends the call when they pass (or when it is dropped).
pub struct TracedBody<B> {
    inner: Pin<Box<B>>,
    span: Span,
    id: HeaderValue,
    end: Option<End>,
}

impl<B: http_body::Body> http_body::Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let _in = this.span.enter();
        let mut r = this.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut r {
            if let Some(t) = frame.trailers_mut() {
                t.insert(HEADER, this.id.clone());
            }
        }
        if let Some(end) = this.end.as_mut() {
            match &r {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        end.finish(code_name(t.get("grpc-status").map(|v| v.as_bytes())));
                    }
                }
                // The body failed, or ended without trailers: no status was sent.
                Poll::Ready(Some(Err(_)) | None) => end.finish("Unknown"),
                Poll::Pending => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
