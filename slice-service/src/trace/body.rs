//! The end of a traced call: the response body that carries the request id into the trailers
//! and is polled inside the call's span, and the record of how the call ended (its code, its
//! elapsed time, and the one line logged for it).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderValue;
use tracing::field::display;
use tracing::Span;

use super::id::HEADER;
use crate::metrics::grpc::code_name;

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
pub(super) struct End {
    pub(super) span: Span,
    pub(super) start: Instant,
    pub(super) otel: bool,
    pub(super) done: bool,
}

impl End {
    pub(super) fn finish(&mut self, code: &'static str) {
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

/// A response body polled inside its call's span, which adds the request id to its trailers
/// and ends the call when they pass (or when it is dropped).
pub struct TracedBody<B> {
    pub(super) inner: Pin<Box<B>>,
    pub(super) span: Span,
    pub(super) id: HeaderValue,
    pub(super) end: Option<End>,
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
