//! Request tracing end to end: real `slice-service` processes, real `slicectl`, real gRPC over
//! loopback, and a real OTLP/gRPC collector (a tonic server implementing the collector's
//! TraceService) that records what it is sent.
//!
//! What a user and an operator notice: a failing command prints a request id that the
//! service's log holds; every answer carries `x-request-id` (a client's own well-formed id is
//! kept, a malformed one replaced); with `--otlp-endpoint` the collector receives a span per
//! call named by its method and carrying the same id, and without it nothing at all.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::slice_service_client::SliceServiceClient;
use slicebed_tests::client::Bearer;
use slicebed_tests::{bin, node, wait_for, Clients, Service, TestNode};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Authed = InterceptedService<Channel, Bearer>;

const HEADER: &str = "x-request-id";

/// Runs slicectl as the admin of `svc` with an isolated config dir.
fn ctl(svc: &Service, cfg: &Path, args: &[&str]) -> Output {
    Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(args)
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .env("XDG_CONFIG_HOME", cfg)
        .env_remove("SLICECTL_SERVER")
        .env_remove("SLICECTL_TOKEN")
        .env_remove("SLICECTL_CONTEXT")
        .env_remove("SLICECTL_CONFIG")
        .output()
        .expect("run slicectl")
}

/// The id in "... (request id ID)" at the end of an error line.
fn printed_id(line: &str) -> String {
    let rest = line
        .rsplit_once("(request id ")
        .unwrap_or_else(|| panic!("no request id in {line:?}"))
        .1;
    rest.strip_suffix(')')
        .unwrap_or_else(|| panic!("request id not at the end of {line:?}"))
        .to_string()
}

fn is_generated(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_failing_command_prints_the_id_that_the_service_log_holds() {
    let svc = Service::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let out = ctl(&svc, cfg.path(), &["slice", "show", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");
    let id = printed_id(&err);
    assert!(is_generated(&id), "{err}");

    // The operator greps the id the user quotes and finds the call, its method and its code.
    let needle = format!("request_id={id}");
    let line = wait_for(
        "the call's line in the service log",
        Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(svc.log_path()).unwrap_or_default();
            let line = log
                .lines()
                .find(|l| l.contains(&needle))
                .map(str::to_string);
            async move { line }
        },
    )
    .await;
    assert!(line.contains("GetSlice"), "{line}");
    assert!(line.contains("code=NotFound"), "{line}");
    assert!(line.contains("principal=user/admin"), "{line}");

    // A successful command prints no id and adds nothing to stderr.
    let out = ctl(&svc, cfg.path(), &["site", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("request id"));
}

#[tokio::test]
async fn a_handlers_own_log_line_carries_the_id_and_the_node_it_speaks_for() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    common::make_site(&a, "mit").await;
    let tok = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let req = node::enroll_request("n1", 4000, common::GI, (30000, 30999));
    let cred = node::enroll(&svc, &tok, req).await.expect("enroll");
    let _n1 = TestNode::connect(&svc, "n1", &cred, 4000, common::GI)
        .await
        .expect("connect");
    // A second control channel is refused, and the handler logs why before it answers.
    let st = TestNode::connect_once(&svc, "n1", &cred, 4000, common::GI)
        .await
        .err()
        .expect("a second channel is refused");
    assert_eq!(st.code(), tonic::Code::FailedPrecondition, "{st:?}");
    let id = st
        .metadata()
        .get(HEADER)
        .expect("x-request-id on the refusal")
        .to_str()
        .unwrap()
        .to_string();
    let needle = format!("request_id={id}");
    let line = wait_for(
        "the handler's warning in the service log",
        Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(svc.log_path()).unwrap_or_default();
            let line = log
                .lines()
                .find(|l| l.contains(&needle) && l.contains("second control channel refused"))
                .map(str::to_string);
            async move { line }
        },
    )
    .await;
    assert!(line.contains("method=Control"), "{line}");
    assert!(line.contains("principal=node/n1"), "{line}");
}

/// A WhoAmI call carrying `id` as its x-request-id, if given; returns the id answered.
async fn whoami_with(c: &mut SliceServiceClient<Authed>, id: Option<&str>) -> String {
    let mut req = tonic::Request::new(pb::WhoAmIRequest {});
    if let Some(id) = id {
        req.metadata_mut().insert(HEADER, id.parse().unwrap());
    }
    let res = c.who_am_i(req).await.expect("whoami");
    res.metadata()
        .get(HEADER)
        .expect("x-request-id on a successful answer")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_answer_carries_an_id_and_only_well_formed_client_ids_are_kept() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut s = a.slices.clone();

    let fresh = whoami_with(&mut s, None).await;
    assert!(is_generated(&fresh), "{fresh}");
    assert_ne!(
        whoami_with(&mut s, None).await,
        fresh,
        "ids differ per call"
    );
    assert_eq!(
        whoami_with(&mut s, Some("my-script.42")).await,
        "my-script.42"
    );
    let long = "a".repeat(65);
    for bad in [long.as_str(), "bad id;rm -rf", "quote\"d"] {
        let got = whoami_with(&mut s, Some(bad)).await;
        assert!(
            is_generated(&got),
            "{bad:?} replaced by a fresh id, got {got:?}"
        );
    }

    // An error (trailers-only answer) carries the client's id in its metadata.
    let mut req = tonic::Request::new(pb::GetSliceRequest {
        name: "nope".into(),
    });
    req.metadata_mut()
        .insert(HEADER, "lost-slice-1".parse().unwrap());
    let st = s.get_slice(req).await.expect_err("no such slice");
    assert_eq!(st.code(), tonic::Code::NotFound);
    assert_eq!(st.metadata().get(HEADER).unwrap(), "lost-slice-1");

    // Unauthenticated calls too.
    let anon = Clients::new(&svc, None).await;
    let st = anon
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("no token");
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    assert!(is_generated(
        st.metadata().get(HEADER).unwrap().to_str().unwrap()
    ));

    // A stream's answer carries it in its headers.
    let mut req = tonic::Request::new(pb::WatchEventsRequest::default());
    req.metadata_mut()
        .insert(HEADER, "watch-7".parse().unwrap());
    let res = s.watch_events(req).await.expect("watch");
    assert_eq!(res.metadata().get(HEADER).unwrap(), "watch-7");
}

#[tokio::test]
async fn a_stream_that_fails_midway_names_its_id_in_the_error() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    common::make_site(&a, "mit").await;
    let token = common::make_user(&a, "alice", "mit").await;
    let alice = Clients::new(&svc, Some(&token)).await;
    let mut req = tonic::Request::new(pb::WatchEventsRequest {
        object: "user/alice".into(),
        after_id: 0,
    });
    req.metadata_mut()
        .insert(HEADER, "alice-watch".parse().unwrap());
    let mut watch = alice
        .slices
        .clone()
        .watch_events(req)
        .await
        .expect("watch")
        .into_inner();
    let tokens = a
        .admin
        .clone()
        .list_tokens(pb::ListTokensRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    a.admin
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            id: tokens[0].id.clone(),
        })
        .await
        .unwrap();
    // The status comes in the trailers, after the stream had started: the id is there too.
    let st = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch ends when its token is revoked")
        .expect_err("the watch ends with an error");
    assert_eq!(st.code(), tonic::Code::Unauthenticated, "{st:?}");
    let id = st
        .metadata()
        .get(HEADER)
        .expect("x-request-id in the trailers of a stream that failed midway");
    assert_eq!(id, "alice-watch");
}

/// One span the collector was sent.
#[derive(Debug, Clone)]
struct Seen {
    /// Resource attributes (service.name, service.version...), as text.
    resource: BTreeMap<String, String>,
    name: String,
    /// Span attributes, as text.
    attrs: BTreeMap<String, String>,
}

impl Seen {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }
}

type Received = Arc<Mutex<Vec<Seen>>>;

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let text = |kvs: &[KeyValue]| -> BTreeMap<String, String> {
            kvs.iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => s.clone(),
                        Some(Value::IntValue(i)) => i.to_string(),
                        Some(other) => format!("{other:?}"),
                        None => String::new(),
                    };
                    (kv.key.clone(), v)
                })
                .collect()
        };
        let mut got = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let resource = text(rs.resource.as_ref().map_or(&[], |r| &r.attributes[..]));
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Seen {
                    resource: resource.clone(),
                    attrs: text(&span.attributes),
                    name: span.name,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A collector on 127.0.0.1: its URL and what it has received.
async fn collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let svc = TraceServiceServer::new(Collector(got.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), got)
}

/// A plaintext service on loopback started with `args` and `env`; killed when dropped.
struct Proc {
    child: Child,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Proc {
    async fn start(args: &[&str], env: &[(&str, &str)]) -> (Self, Clients) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let log = std::fs::File::create(tmp.path().join("service.log")).unwrap();
        let mut child = Command::new(bin("slice-service"))
            .args(["--listen", "127.0.0.1:0", "--tls", "off", "--data-dir"])
            .arg(&dir)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn slice-service");
        let addr_file = dir.join("service.addr");
        let addr = wait_for("slice-service to listen", Duration::from_secs(30), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("slice-service exited with {st}");
            }
            let a = std::fs::read_to_string(&addr_file)
                .ok()
                .filter(|a| !a.is_empty());
            async move { a }
        })
        .await;
        let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
        let ch = Channel::from_shared(format!("http://{}", addr.trim()))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let b = Bearer::new(token.trim()).unwrap();
        let clients = Clients {
            slices: SliceServiceClient::with_interceptor(ch.clone(), b.clone()),
            admin: slicebed_proto::v1::admin_service_client::AdminServiceClient::with_interceptor(
                ch.clone(),
                b.clone(),
            ),
            node: slicebed_proto::v1::node_service_client::NodeServiceClient::with_interceptor(
                ch, b,
            ),
        };
        let p = Proc {
            child,
            dir,
            _tmp: tmp,
        };
        (p, clients)
    }

    /// SIGTERM, then waits (bounded) for a clean exit: the exporter has flushed by then.
    async fn stop(mut self) {
        slicebed_tests::service::signal(self.child.id(), libc::SIGTERM);
        let child = &mut self.child;
        let st = wait_for(
            "slice-service to exit on SIGTERM",
            Duration::from_secs(20),
            || {
                let st = child.try_wait().ok().flatten();
                async move { st }
            },
        )
        .await;
        assert!(st.success(), "exit status {st}: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.parent().unwrap().join("service.log")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a successful and a failing call with known ids.
async fn two_calls(c: &Clients, tag: &str) {
    let mut s = c.slices.clone();
    assert_eq!(
        whoami_with(&mut s, Some(&format!("{tag}-ok"))).await,
        format!("{tag}-ok")
    );
    let mut req = tonic::Request::new(pb::GetSliceRequest {
        name: "nope".into(),
    });
    req.metadata_mut()
        .insert(HEADER, format!("{tag}-missing").parse().unwrap());
    let st = s.get_slice(req).await.expect_err("no such slice");
    assert_eq!(st.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn spans_reach_an_otlp_collector_only_with_the_flag() {
    let (url, got) = collector().await;

    // Without the flag, even with the SDK's own environment variables pointing at the
    // collector, nothing is exported: the service has exited (and would have flushed) before
    // the collector is read.
    let (quiet, c) = Proc::start(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
        ],
    )
    .await;
    two_calls(&c, "quiet").await;
    drop(c);
    quiet.stop().await;
    assert!(got.lock().unwrap().is_empty(), "{:?}", got.lock().unwrap());

    let (loud, c) = Proc::start(&["--otlp-endpoint", &url], &[]).await;
    two_calls(&c, "loud").await;
    drop(c);
    // Spans are batched; stopping the service flushes them.
    loud.stop().await;
    let got = got.lock().unwrap().clone();
    let find = |id: &str| {
        got.iter()
            .find(|s| s.attr("request_id") == id)
            .unwrap_or_else(|| panic!("no span with request_id {id}: {got:?}"))
    };
    let ok = find("loud-ok");
    assert_eq!(ok.name, "slicebed.v1.SliceService/WhoAmI", "{ok:?}");
    assert_eq!(ok.resource["service.name"], "slice-service", "{ok:?}");
    assert!(!ok.resource["service.version"].is_empty(), "{ok:?}");
    assert_eq!(ok.attr("code"), "OK", "{ok:?}");
    assert_eq!(ok.attr("principal"), "user/admin", "{ok:?}");
    let missing = find("loud-missing");
    assert_eq!(
        missing.name, "slicebed.v1.SliceService/GetSlice",
        "{missing:?}"
    );
    assert_eq!(missing.attr("code"), "NotFound", "{missing:?}");
    assert!(
        !got.iter()
            .any(|s| s.attr("request_id").starts_with("quiet")),
        "{got:?}"
    );
}

#[test]
fn a_bad_otlp_endpoint_stops_the_start_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin("slice-service"))
        .args(["--listen", "127.0.0.1:0", "--tls", "off", "--data-dir"])
        .arg(tmp.path())
        .args(["--otlp-endpoint", "collector:4317"])
        .output()
        .expect("run slice-service");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--otlp-endpoint \"collector:4317\""),
        "the error names the flag and the value: {err}"
    );
}

#[tokio::test]
async fn a_run_named_by_the_user_carries_that_id_even_when_the_service_dies_midway() {
    let mut svc = Service::start().await;
    let cfg = tempfile::tempdir().unwrap();

    // Automation names its run; the service keeps that id and logs it.
    let out = ctl(
        &svc,
        cfg.path(),
        &["--request-id", "nightly-42.a", "slice", "show", "nope"],
    );
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(printed_id(&err), "nightly-42.a", "{err}");
    wait_for(
        "the named call in the service log",
        Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(svc.log_path()).unwrap_or_default();
            async move { log.contains("request_id=nightly-42.a").then_some(()) }
        },
    )
    .await;

    // An id the service would replace is refused before anything is sent.
    let out = ctl(&svc, cfg.path(), &["--request-id", "a b", "site", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("invalid --request-id"), "{err}");

    // A follow cut off by the service's death gets no answer to carry an id: slicectl names the
    // one its requests were sent with. (An event first, so the follow prints a line once it is
    // under way; killed before or after its stream opens, the error must name the id.)
    let out = ctl(&svc, cfg.path(), &["site", "create", "tracing-lab"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut follow = Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(["--request-id", "follow-7", "events", "--follow"])
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .env("XDG_CONFIG_HOME", cfg.path())
        .env_remove("SLICECTL_SERVER")
        .env_remove("SLICECTL_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run slicectl");
    let mut stdout = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("tracing-lab") {
        let n = std::io::BufRead::read_line(&mut stdout, &mut seen).unwrap();
        assert!(n > 0, "the follow ended before showing the site: {seen}");
    }
    svc.kill();
    let out = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "{err}");
    assert_eq!(printed_id(&err), "follow-7", "{err}");
}
