//! Request tracing: a `tracing` span and a request id for every gRPC call (`layer.rs`, `id.rs`),
//! and the optional export of those spans over OTLP (`otlp.rs`, `--otlp-endpoint`).
//!
//! The request id is what a user quotes and an operator greps: slicectl prints it on every
//! error, and every log line of the call carries it in its `rpc{...}` span. It is never used for
//! anything but that; a client-chosen id is echoed only after it has been checked.
//!
//! Nothing here decides anything about a request: a failure to trace never fails a call, and
//! with no `--otlp-endpoint` nothing leaves the process and no exporter thread runs.

mod body;
pub mod id;
pub mod layer;
pub mod otlp;

#[cfg(test)]
mod tests;

pub use body::TracedBody;
pub use id::RequestId;
pub use layer::TraceLayer;

/// Records the caller of the current call in its span (`principal=user/alice`), once the
/// handler has authenticated it. Outside a call it does nothing.
pub fn record_principal(actor: &str) {
    tracing::Span::current().record("principal", tracing::field::display(actor));
}
