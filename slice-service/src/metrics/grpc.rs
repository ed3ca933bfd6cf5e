//! The tower layer that counts every gRPC call by service, method and status code, times it,
//! and keeps a gauge of calls in progress.
//!
//! When a call is counted: at its END, with the final `grpc-status` — from the response
//! headers for a trailers-only answer (every error tonic returns before a stream starts), else
//! from the trailers that end the body. A streaming call (Control, WatchEvents, Exec, Logs...)
//! is therefore counted when its stream ends, and is in `grpc_requests_in_flight` meanwhile; a
//! body dropped before its trailers (the client went away) counts as `Canceled`.
//!
//! What is timed: the time to the response HEAD — the handler's work for a unary call, and the
//! set-up (authentication, authorisation, opening the node session) for a streaming one. A
//! stream's whole life is not latency and would only fill the top bucket.
//!
//! Labels are bounded: service and method come only from the descriptor sets the server
//! serves (anything else is `other`), and codes from the 17 gRPC codes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Label value for paths outside the served services.
pub const OTHER: &str = "other";

/// Upper bounds of the latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One counted call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

/// One method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: &'static str,
    pub method: &'static str,
}

/// The call metrics; cheap to clone (every field is shared).
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    requests: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    in_flight: Family<MethodLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl GrpcMetrics {
    /// Registers the call metrics in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            in_flight: Family::default(),
        };
        r.register(
            "grpc_requests",
            "gRPC calls answered, by service, method and final status code (counted when the call ends; a streaming call when its stream ends)",
            m.requests.clone(),
        );
        r.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC call's arrival to its response head: the handler for unary calls, the set-up for streaming ones",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register(
            "grpc_requests_in_flight",
            "gRPC calls in progress (streams included), by service and method",
            m.in_flight.clone(),
        );
        m
    }

    /// The layer to add to the server.
    pub fn layer(&self) -> GrpcLayer {
        GrpcLayer(self.clone())
    }
}

/// Known methods: `/package.Service/Method` -> (service, method), from the descriptor sets
/// of everything the server serves. Built once; it holds no state, only names.
static KNOWN: LazyLock<HashMap<String, (&'static str, &'static str)>> = LazyLock::new(|| {
    use prost::Message;
    let mut known = HashMap::new();
    for set in [
        slicebed_proto::v1::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for svc in file.service {
                let name = svc.name.unwrap_or_default();
                let full = if package.is_empty() {
                    name
                } else {
                    format!("{package}.{name}")
                };
                let service: &'static str = Box::leak(full.clone().into_boxed_str());
                for m in svc.method {
                    let method = m.name.unwrap_or_default();
                    let path = format!("/{full}/{method}");
                    let method: &'static str = Box::leak(method.into_boxed_str());
                    known.insert(path, (service, method));
                }
            }
        }
    }
    known
});

/// The service and method of a request path; `("other", "other")` for anything unknown.
pub fn method_of(path: &str) -> (&'static str, &'static str) {
    KNOWN.get(path).copied().unwrap_or((OTHER, OTHER))
}

/// The name of a numeric `grpc-status` (as gRPC's own libraries spell them).
pub fn code_name(status: Option<&[u8]>) -> &'static str {
    let n = status
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u16>().ok());
    match n {
        Some(0) => "OK",
        Some(1) => "Canceled",
        Some(2) => "Unknown",
        Some(3) => "InvalidArgument",
        Some(4) => "DeadlineExceeded",
        Some(5) => "NotFound",
        Some(6) => "AlreadyExists",
        Some(7) => "PermissionDenied",
        Some(8) => "ResourceExhausted",
        Some(9) => "FailedPrecondition",
        Some(10) => "Aborted",
        Some(11) => "OutOfRange",
        Some(12) => "Unimplemented",
        Some(13) => "Internal",
        Some(14) => "Unavailable",
        Some(15) => "DataLoss",
        Some(16) => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Tower layer: wrap the server's services so every call is counted (see the module doc).
#[derive(Clone, Debug)]
pub struct GrpcLayer(GrpcMetrics);

impl<S> tower_layer::Layer<S> for GrpcLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered(inner, self.0.clone())
    }
}

/// See [`GrpcLayer`].
#[derive(Clone, Debug)]
pub struct Metered<S>(S, GrpcMetrics);

/// A call not yet counted. Dropped uncounted (the client went away before the end), it
/// counts as `Canceled`.
#[derive(Debug)]
struct Call {
    m: GrpcMetrics,
    method: MethodLabels,
    start: Instant,
    timed: bool,
    done: bool,
}

impl Call {
    fn new(m: GrpcMetrics, path: &str) -> Self {
        let (service, method) = method_of(path);
        let method = MethodLabels { service, method };
        m.in_flight.get_or_create(&method).inc();
        Self {
            m,
            method,
            start: Instant::now(),
            timed: false,
            done: false,
        }
    }

    /// The response head is out.
    fn head(&mut self) {
        if !self.timed {
            self.timed = true;
            self.m
                .latency
                .get_or_create(&self.method)
                .observe(self.start.elapsed().as_secs_f64());
        }
    }

    fn finish(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.head();
        self.done = true;
        self.m.in_flight.get_or_create(&self.method).dec();
        self.m
            .requests
            .get_or_create(&CallLabels {
                service: self.method.service,
                method: self.method.method,
                code,
            })
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish("Canceled");
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Metered<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body + Send + 'static,
{
    type Response = http::Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut call = Call::new(self.1.clone(), req.uri().path());
        let fut = self.0.call(req);
        Box::pin(async move {
            let res = match fut.await {
                Ok(res) => res,
                Err(e) => {
                    call.finish("Unknown");
                    return Err(e);
                }
            };
            call.head();
            // Trailers-only (errors before any message): the status is in the headers.
            let call = match res.headers().get("grpc-status") {
                Some(v) => {
                    call.finish(code_name(Some(v.as_bytes())));
                    None
                }
                None => Some(call),
            };
            Ok(res.map(|inner| MeteredBody {
                inner: Box::pin(inner),
                call,
            }))
        })
    }
}

/// A response body that counts its call when its trailers pass (or when it is dropped).
pub struct MeteredBody<B> {
    inner: Pin<Box<B>>,
    call: Option<Call>,
}

impl<B: http_body::Body> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let r = this.inner.as_mut().poll_frame(cx);
        if let Some(call) = this.call.as_mut() {
            match &r {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        call.finish(code_name(t.get("grpc-status").map(|v| v.as_bytes())));
                    }
                }
                // The body failed, or ended without trailers: no status was sent.
                Poll::Ready(Some(Err(_)) | None) => call.finish("Unknown"),
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

/// For tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// One answered call of `SliceService/GetSlice`, counted with code OK.
    pub fn one_call(m: &GrpcMetrics) {
        let mut c = Call::new(m.clone(), "/slicebed.v1.SliceService/GetSlice");
        c.finish("OK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tower_layer::Layer as _;
    use tower_service::Service as _;

    /// A body of scripted frames.
    struct Frames(VecDeque<http_body::Frame<&'static [u8]>>);

    impl http_body::Body for Frames {
        type Data = &'static [u8];
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<&'static [u8]>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    fn trailers(code: &str) -> http_body::Frame<&'static [u8]> {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", code.parse().unwrap());
        http_body::Frame::trailers(t)
    }

    /// A server answering every request with `head_status` in its headers (if any) and the
    /// given body frames.
    struct Server {
        head_status: Option<&'static str>,
        frames: Vec<http_body::Frame<&'static [u8]>>,
    }

    fn server(
        head_status: Option<&'static str>,
        frames: Vec<http_body::Frame<&'static [u8]>>,
    ) -> Server {
        Server {
            head_status,
            frames,
        }
    }

    impl tower_service::Service<http::Request<()>> for Server {
        type Response = http::Response<Frames>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut res = http::Response::new(Frames(std::mem::take(&mut self.frames).into()));
            if let Some(s) = self.head_status {
                res.headers_mut().insert("grpc-status", s.parse().unwrap());
            }
            std::future::ready(Ok(res))
        }
    }

    fn metrics() -> (Registry, GrpcMetrics) {
        let mut r = Registry::default();
        let m = GrpcMetrics::register(&mut r);
        (r, m)
    }

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    async fn drain<B: http_body::Body + Unpin>(mut b: B) {
        while std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx))
            .await
            .is_some()
        {}
    }

    #[test]
    fn methods_come_from_the_served_descriptors_and_the_rest_is_other() {
        assert_eq!(
            method_of("/slicebed.v1.SliceService/CreateSlice"),
            ("slicebed.v1.SliceService", "CreateSlice")
        );
        assert_eq!(
            method_of("/slicebed.v1.AccessService/Exec"),
            ("slicebed.v1.AccessService", "Exec")
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        for unknown in [
            "/slicebed.v1.SliceService/NoSuchMethod",
            "/evil.Service/Method",
            "/",
            "",
            "/slicebed.v1.SliceService/CreateSlice/extra",
            "/metrics",
        ] {
            assert_eq!(method_of(unknown), (OTHER, OTHER), "{unknown}");
        }
    }

    #[test]
    fn codes_are_named_and_nonsense_is_unknown() {
        assert_eq!(code_name(Some(b"0")), "OK");
        assert_eq!(code_name(Some(b"5")), "NotFound");
        assert_eq!(code_name(Some(b"16")), "Unauthenticated");
        assert_eq!(code_name(Some(b"17")), "Unknown");
        assert_eq!(code_name(Some(b"x")), "Unknown");
        assert_eq!(code_name(None), "Unknown");
    }

    #[tokio::test]
    async fn the_status_is_read_from_the_trailers_when_the_body_ends() {
        let (r, m) = metrics();
        let mut svc = m.layer().layer(server(
            None,
            vec![http_body::Frame::data(&b"x"[..]), trailers("0")],
        ));
        let res = svc
            .call(request("/slicebed.v1.SliceService/CreateSlice"))
            .await
            .unwrap();
        // Not counted before the end of the body; in flight meanwhile.
        let t = text(&r);
        assert!(!t.contains("code=\"OK\""), "{t}");
        assert!(t.contains("grpc_requests_in_flight{service=\"slicebed.v1.SliceService\",method=\"CreateSlice\"} 1"), "{t}");
        drain(res.into_body()).await;
        let t = text(&r);
        assert!(t.contains("grpc_requests_total{service=\"slicebed.v1.SliceService\",method=\"CreateSlice\",code=\"OK\"} 1"), "{t}");
        assert!(t.contains("grpc_requests_in_flight{service=\"slicebed.v1.SliceService\",method=\"CreateSlice\"} 0"), "{t}");
        assert!(t.contains("grpc_request_duration_seconds_count{service=\"slicebed.v1.SliceService\",method=\"CreateSlice\"} 1"), "{t}");
    }

    #[tokio::test]
    async fn a_trailers_only_answer_is_counted_from_its_headers() {
        let (r, m) = metrics();
        let mut svc = m.layer().layer(server(Some("5"), vec![]));
        let res = svc
            .call(request("/slicebed.v1.SliceService/GetSlice"))
            .await
            .unwrap();
        let t = text(&r);
        assert!(t.contains("grpc_requests_total{service=\"slicebed.v1.SliceService\",method=\"GetSlice\",code=\"NotFound\"} 1"), "{t}");
        // Ending the body does not count it twice.
        drain(res.into_body()).await;
        let t = text(&r);
        assert!(t.contains("code=\"NotFound\"} 1"), "{t}");
    }

    #[tokio::test]
    async fn unknown_paths_are_other_and_abandoned_bodies_are_canceled() {
        let (r, m) = metrics();
        let mut svc = m
            .layer()
            .layer(server(None, vec![http_body::Frame::data(&b"x"[..])]));
        let res = svc.call(request("/someone.Else/Probe")).await.unwrap();
        drop(res);
        let t = text(&r);
        assert!(
            t.contains(
                "grpc_requests_total{service=\"other\",method=\"other\",code=\"Canceled\"} 1"
            ),
            "{t}"
        );
        assert!(!t.contains("someone"), "{t}");
    }
}
