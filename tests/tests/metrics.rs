//! Operator metrics end to end: a real service with `[metrics] listen` on port 0 and a real
//! node manager with `--metrics-listen 127.0.0.1:0` on the local Docker engine; a slice is
//! created, exec'd into and deleted, and both `/metrics` endpoints are scraped over HTTP and
//! parsed: the counts and states must match what happened, and no series may name a slice,
//! a sliver or a node on the service.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::testbed::*;
use common::*;
use slicebed_proto::v1 as pb;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{bin, wait_for, Clients, Service};

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format 0.0.4 or OpenMetrics text: comments skipped, label
/// values unescaped. Panics on a line it cannot read (the test wants to know).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {line}"),
        };
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let end = loop {
                let (i, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("open labels: {line}"));
                match c {
                    '}' => break i,
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|x| x.1) {
                                Some('\\') => match chars.next().map(|x| x.1) {
                                    Some('n') => value.push('\n'),
                                    Some(c) => value.push(c),
                                    None => panic!("cut escape: {line}"),
                                },
                                Some('"') => break,
                                Some(c) => value.push(c),
                                None => panic!("open value: {line}"),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            };
            &body[end + 1..]
        } else {
            rest
        };
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The value of the one sample named `name` whose labels include `want`; `None` if absent.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {want:?} matches {found:?}");
    found.first().map(|s| s.value)
}

/// `GET /metrics` over plain HTTP/1.1: (content type, body).
fn scrape(addr: &str, openmetrics: bool) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = if openmetrics {
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    } else {
        "text/plain"
    };
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read /metrics");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .expect("a content type");
    (ctype, body.to_string())
}

/// The address a daemon wrote to `<dir>/metrics.addr`.
async fn metrics_addr(dir: &Path) -> String {
    let file = dir.join("metrics.addr");
    wait_for("metrics.addr", Duration::from_secs(10), || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await
}

/// `node-manager run` with metrics on, in place of the harness's own run of the node.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_with_metrics(nm: &mut NodeManager) -> Agent {
    nm.kill9();
    let _ = std::fs::remove_file(nm.state_dir.join("metrics.addr"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(nm.state_dir.parent().unwrap().join("node-manager.log"))
        .unwrap();
    let child = Command::new(bin("node-manager"))
        .arg("run")
        .arg("--state-dir")
        .arg(&nm.state_dir)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn node-manager");
    Agent(child)
}

fn ctl(svc: &Service, args: &[&str]) -> std::process::Output {
    Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .output()
        .expect("run slicectl")
}

const GRPC: &str = "slicebed_grpc_requests_total";

#[tokio::test]
async fn a_create_exec_delete_cycle_shows_in_both_daemons_metrics() {
    let svc = Service::start_with(
        "[nodes]\nheartbeat_interval = \"500ms\"\nmissed_heartbeats = 3\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let svc_metrics = metrics_addr(&svc.dir).await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "mit").await;
    let node_name = unique("mx");
    let mut nm = NodeManager::start(&svc, "mit", &node_name).await;
    let _agent = run_with_metrics(&mut nm);
    let nm_metrics = metrics_addr(&nm.state_dir).await;
    wait_ready(&admin, 1).await;

    let slice_name = unique("metr");
    admin
        .slices
        .clone()
        .create_slice(web_slice(&slice_name, 1))
        .await
        .expect("create");
    let running = wait_running(&admin, &slice_name).await;
    let sliver_id = running.slivers[0].id.clone();

    let out = ctl(&svc, &["exec", &slice_name, "--", "echo", "hello-metrics"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = admin
        .slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "no-such-slice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // While the sliver runs.
    let (ctype, text) = scrape(&svc_metrics, false);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse(&text);
    let slice_svc = ("service", "slicebed.v1.SliceService");
    assert!(
        value(
            &m,
            GRPC,
            &[slice_svc, ("method", "CreateSlice"), ("code", "OK")]
        ) >= Some(1.0),
        "{text}"
    );
    assert!(
        value(
            &m,
            GRPC,
            &[
                ("service", "slicebed.v1.AccessService"),
                ("method", "Exec"),
                ("code", "OK")
            ]
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            GRPC,
            &[slice_svc, ("method", "GetSlice"), ("code", "NotFound")]
        ),
        Some(1.0),
        "{text}"
    );
    // The node's control channel is open: in flight, not yet counted.
    assert_eq!(
        value(
            &m,
            "slicebed_grpc_requests_in_flight",
            &[
                ("service", "slicebed.v1.NodeService"),
                ("method", "Control")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    // Latency histogram with buckets, per method.
    let buckets = m
        .iter()
        .filter(|s| {
            s.name == "slicebed_grpc_request_duration_seconds_bucket"
                && s.labels.get("method").map(String::as_str) == Some("CreateSlice")
        })
        .count();
    assert!(
        buckets >= 10,
        "CreateSlice latency buckets: {buckets}\n{text}"
    );
    assert_eq!(
        value(
            &m,
            "slicebed_grpc_request_duration_seconds_bucket",
            &[("method", "CreateSlice"), ("le", "+Inf")]
        ),
        value(
            &m,
            "slicebed_grpc_request_duration_seconds_count",
            &[("method", "CreateSlice")]
        )
    );
    // States as the API shows them.
    let live: Vec<&pb::Sliver> = running.slivers.iter().collect();
    assert_eq!(
        value(&m, "slicebed_slivers", &[("state", "running")]),
        Some(live.len() as f64),
        "{text}"
    );
    assert_eq!(
        value(&m, "slicebed_slivers", &[("state", "pending")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "slicebed_slices", &[("life", "live")]), Some(1.0));
    assert_eq!(
        value(&m, "slicebed_nodes", &[("state", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "slicebed_nodes", &[("state", "unreachable")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "slicebed_node_streams", &[]), Some(1.0));
    assert_eq!(value(&m, "slicebed_slivers_unknown", &[]), Some(0.0));
    assert!(value(&m, "slicebed_event_log_last_id", &[]) > Some(0.0));
    assert!(value(&m, "slicebed_db_pool_max_connections", &[("pool", "read")]) >= Some(1.0));
    assert_eq!(
        value(&m, "slicebed_user_streams_cap", &[("kind", "exec")]),
        Some(32.0)
    );
    assert!(value(&m, "slicebed_placements_total", &[("outcome", "placed")]).is_some());
    // Bounded labels: nothing names a slice, a sliver, a user or a node.
    for s in &m {
        for k in s.labels.keys() {
            assert!(
                matches!(
                    k.as_str(),
                    "service"
                        | "method"
                        | "code"
                        | "le"
                        | "state"
                        | "life"
                        | "kind"
                        | "pool"
                        | "outcome"
                ),
                "unexpected label {k} on {s:?}"
            );
        }
    }
    for secret in [&sliver_id, &slice_name, &node_name] {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} appears in the metrics"
        );
    }

    // The node manager: passes, engine calls, its slivers.
    let (_, nm_text) = scrape(&nm_metrics, false);
    let n = parse(&nm_text);
    let node = ("node", node_name.as_str());
    assert!(
        value(
            &n,
            "slicebed_node_manager_reconcile_passes_total",
            &[node, ("result", "ok")]
        ) > Some(0.0),
        "{nm_text}"
    );
    assert!(
        value(
            &n,
            "slicebed_node_manager_engine_request_duration_seconds_count",
            &[node, ("op", "create_and_start")]
        ) >= Some(1.0),
        "{nm_text}"
    );
    assert!(
        value(
            &n,
            "slicebed_node_manager_engine_request_duration_seconds_count",
            &[node, ("op", "exec")]
        ) >= Some(1.0),
        "{nm_text}"
    );
    assert_eq!(
        value(
            &n,
            "slicebed_node_manager_slivers",
            &[node, ("state", "running")]
        ),
        Some(1.0),
        "{nm_text}"
    );
    assert_eq!(
        value(
            &n,
            "slicebed_node_manager_image_fetches_total",
            &[node, ("result", "ok")]
        ),
        Some(0.0)
    );

    // Delete; once the node has removed the container, the states follow.
    admin
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: slice_name.clone(),
        })
        .await
        .expect("delete");
    let m = wait_for(
        "the sliver deleted in the metrics",
        Duration::from_secs(60),
        || {
            let addr = svc_metrics.clone();
            async move {
                let m = parse(&scrape(&addr, false).1);
                (value(&m, "slicebed_slivers", &[("state", "deleted")]) == Some(1.0)).then_some(m)
            }
        },
    )
    .await;
    assert_eq!(
        value(&m, "slicebed_slivers", &[("state", "running")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "slicebed_slices", &[("life", "live")]), Some(0.0));
    assert_eq!(
        value(&m, "slicebed_slices", &[("life", "deleted")]),
        Some(1.0)
    );
    assert!(
        value(
            &m,
            GRPC,
            &[slice_svc, ("method", "DeleteSlice"), ("code", "OK")]
        ) >= Some(1.0)
    );
    wait_for("the node's slivers gone", Duration::from_secs(30), || {
        let addr = nm_metrics.clone();
        let node_name = node_name.clone();
        async move {
            let n = parse(&scrape(&addr, false).1);
            (value(
                &n,
                "slicebed_node_manager_slivers",
                &[("node", &node_name), ("state", "running")],
            ) == Some(0.0))
            .then_some(())
        }
    })
    .await;

    // OpenMetrics when asked for (Prometheus asks), ending in # EOF.
    let (ctype, text) = scrape(&svc_metrics, true);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(!parse(&text).is_empty());
}

#[test]
fn the_parser_reads_both_formats() {
    let m = parse(
        "# HELP x_total Help.\n# TYPE x_total counter\n\
         x_total{a=\"1\",b=\"q\\\"uote\"} 3\nup 1\n\
         h_bucket{le=\"+Inf\"} 2\n# EOF\n",
    );
    assert_eq!(m.len(), 3);
    assert_eq!(value(&m, "x_total", &[("b", "q\"uote")]), Some(3.0));
    assert_eq!(value(&m, "up", &[]), Some(1.0));
    assert_eq!(value(&m, "h_bucket", &[("le", "+Inf")]), Some(2.0));
}
