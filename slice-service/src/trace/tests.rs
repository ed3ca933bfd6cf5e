//! The layer against scripted servers: the id on every kind of answer, the sanitised id seen
//! by the handler, and log lines that carry it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tower_layer::Layer as _;
use tower_service::Service as _;

use super::id::HEADER;
use super::*;

/// A body of scripted frames.
struct Frames(VecDeque<http_body::Frame<&'static [u8]>>);

impl http_body::Body for Frames {
    type Data = &'static [u8];
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<&'static [u8]>, Self::Error>>> {
        let next = self.get_mut().0.pop_front();
        if next.is_some() {
            tracing::info!("frame sent");
        }
        Poll::Ready(next.map(Ok))
    }
}

fn trailers(code: &str) -> http_body::Frame<&'static [u8]> {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", code.parse().unwrap());
    http_body::Frame::trailers(t)
}

/// What the handler saw of each request: its x-request-id header and the id in its extensions.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<RequestId>)>>>;

/// Answers with `head_status` in its headers (if any) and the given frames; logs inside its
/// future (as a handler's `?` into status.rs does) and keeps the request id it was given.
struct Server {
    head_status: Option<&'static str>,
    frames: Vec<http_body::Frame<&'static [u8]>>,
    seen: Seen,
}

fn server(
    head_status: Option<&'static str>,
    frames: Vec<http_body::Frame<&'static [u8]>>,
) -> Server {
    Server {
        head_status,
        frames,
        seen: Default::default(),
    }
}

impl tower_service::Service<http::Request<()>> for Server {
    type Response = http::Response<Frames>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<()>) -> Self::Future {
        let header = req
            .headers()
            .get(HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        let ext = req.extensions().get::<RequestId>().cloned();
        self.seen.lock().unwrap().push((header, ext));
        let frames = std::mem::take(&mut self.frames);
        let head = self.head_status;
        Box::pin(async move {
            crate::trace::record_principal("user/alice");
            tracing::error!("handler says hello");
            // What a handler's `?` does with a database failure (api/status.rs).
            let _ = tonic::Status::from(crate::error::Error::Internal("db on fire".into()));
            let mut res = http::Response::new(Frames(frames.into()));
            if let Some(s) = head {
                res.headers_mut().insert("grpc-status", s.parse().unwrap());
            }
            Ok(res)
        })
    }
}

/// Log lines written while `f` runs, as the service's text log would show them.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || Writer(w.clone()))
        .finish();
    let out = {
        let _g = tracing::subscriber::set_default(sub);
        f.await
    };
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    (out, text)
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn request(path: &str, id: Option<&str>) -> http::Request<()> {
    let mut b = http::Request::builder().uri(path);
    if let Some(id) = id {
        b = b.header(HEADER, id);
    }
    b.body(()).unwrap()
}

async fn drain<B: http_body::Body + Unpin>(mut b: B) -> Option<http::HeaderMap> {
    let mut last = None;
    while let Some(Ok(f)) = std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await {
        if let Ok(t) = f.into_trailers() {
            last = Some(t);
        }
    }
    last
}

fn id_of(h: &http::HeaderMap) -> String {
    h.get(HEADER)
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_trailers_only_error_carries_the_id_and_every_line_of_the_call_does_too() {
    let s = server(Some("5"), vec![]);
    let seen = s.seen.clone();
    let mut svc = TraceLayer::new(false).layer(s);
    let ((id, seen_id), log) = logged(async {
        let res = svc
            .call(request("/slicebed.v1.SliceService/GetSlice", None))
            .await
            .unwrap();
        let id = id_of(res.headers());
        assert_eq!(drain(res.into_body()).await, None);
        (id, seen.lock().unwrap()[0].clone())
    })
    .await;
    assert_eq!(id.len(), 16, "{id}");
    // The handler saw the same id, in the header and the extensions.
    assert_eq!(seen_id.0.as_deref(), Some(id.as_str()));
    assert_eq!(seen_id.1.map(|i| i.to_string()), Some(id.clone()));
    let lines: Vec<&str> = log.lines().collect();
    let hello = lines
        .iter()
        .find(|l| l.contains("handler says hello"))
        .expect(&log);
    assert!(hello.contains(&format!("request_id={id}")), "{hello}");
    assert!(
        hello.contains("service=slicebed.v1.SliceService method=GetSlice"),
        "{hello}"
    );
    // The detail of an internal error, which clients never see, is logged under the id.
    let internal = lines
        .iter()
        .find(|l| l.contains("internal error") && l.contains("db on fire"))
        .expect(&log);
    assert!(internal.contains(&format!("request_id={id}")), "{internal}");
    let end = lines
        .iter()
        .find(|l| l.contains("call refused"))
        .expect(&log);
    assert!(end.contains(" INFO "), "{end}");
    assert!(end.contains(&format!("request_id={id}")), "{end}");
    assert!(end.contains("principal=user/alice"), "{end}");
    assert!(end.contains("code=NotFound"), "{end}");
    assert!(end.contains("elapsed_ms="), "{end}");
    assert_eq!(log.matches("call refused").count(), 1, "{log}");
}

#[tokio::test]
async fn a_stream_gets_the_id_in_its_headers_and_trailers_and_ends_with_its_code() {
    let s = server(
        None,
        vec![http_body::Frame::data(&b"x"[..]), trailers("13")],
    );
    let mut svc = TraceLayer::new(false).layer(s);
    let ((head, tail), log) = logged(async {
        let res = svc
            .call(request("/slicebed.v1.AccessService/Exec", Some("my-id.1")))
            .await
            .unwrap();
        let head = id_of(res.headers());
        let tail = drain(res.into_body()).await.expect("trailers");
        (head, tail)
    })
    .await;
    assert_eq!(head, "my-id.1");
    assert_eq!(id_of(&tail), "my-id.1");
    assert_eq!(tail.get("grpc-status").unwrap(), "13");
    let sent = log.lines().find(|l| l.contains("frame sent")).expect(&log);
    assert!(sent.contains("request_id=my-id.1"), "{sent}");
    let end = log.lines().find(|l| l.contains("call failed")).expect(&log);
    assert!(
        end.contains(" WARN ") && end.contains("code=Internal"),
        "{end}"
    );
}

#[tokio::test]
async fn a_malformed_client_id_is_replaced_before_anyone_sees_it() {
    let s = server(None, vec![trailers("0")]);
    let seen = s.seen.clone();
    let mut svc = TraceLayer::new(false).layer(s);
    // Bytes a header may carry but a log line must not: non-ASCII, quotes, spaces.
    let evil: &[u8] = b"evil\xff\"id with spaces";
    let (id, log) = logged(async {
        let req = http::Request::builder()
            .uri("/slicebed.v1.SliceService/WhoAmI")
            .header(HEADER, http::HeaderValue::from_bytes(evil).unwrap())
            .body(())
            .unwrap();
        let res = svc.call(req).await.unwrap();
        let id = id_of(res.headers());
        drain(res.into_body()).await;
        id
    })
    .await;
    assert_eq!(id.len(), 16);
    assert_eq!(seen.lock().unwrap()[0].0.as_deref(), Some(id.as_str()));
    assert!(!log.contains("evil"), "{log:?}");
    let end = log.lines().find(|l| l.contains("call ended")).expect(&log);
    assert!(end.contains(" DEBUG ") && end.contains("code=OK"), "{end}");
}

#[tokio::test]
async fn an_abandoned_call_ends_canceled_and_unknown_paths_are_other() {
    let s = server(None, vec![http_body::Frame::data(&b"x"[..])]);
    let mut svc = TraceLayer::new(false).layer(s);
    let ((), log) = logged(async {
        let res = svc
            .call(request("/evil.Service/Probe", None))
            .await
            .unwrap();
        drop(res);
    })
    .await;
    let end = log
        .lines()
        .find(|l| l.contains("call refused"))
        .expect(&log);
    assert!(end.contains("code=Canceled"), "{end}");
    assert!(end.contains("service=other method=other"), "{end}");
    assert!(!log.contains("evil"), "{log}");
}

#[test]
fn outcomes_split_the_callers_errors_from_the_services() {
    use body::{outcome, Outcome};
    assert_eq!(outcome("OK"), Outcome::Ok);
    for c in [
        "NotFound",
        "InvalidArgument",
        "Unauthenticated",
        "Canceled",
        "Unavailable",
    ] {
        assert_eq!(outcome(c), Outcome::Refused, "{c}");
    }
    for c in ["Internal", "Unknown", "DataLoss"] {
        assert_eq!(outcome(c), Outcome::Failed, "{c}");
    }
}
