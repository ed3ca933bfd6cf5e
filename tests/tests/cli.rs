//! `slicectl` as a user runs it: a real binary against a real service (and, for `--wait`,
//! real node managers on Docker). Checks output, exit codes and the config file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{bin, Clients, Service};

/// Runs slicectl with an isolated config dir.
fn ctl(cfg: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("slicectl"));
    if args.contains(&"--server") {
        // Every test service's certificate comes from the test CA (`dev up` has its own).
        cmd.env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0);
    } else {
        cmd.env_remove("SLICECTL_CA_CERT");
    }
    cmd.args(args)
        .env("XDG_CONFIG_HOME", cfg)
        .env_remove("SLICECTL_SERVER")
        .env_remove("SLICECTL_TOKEN")
        .env_remove("SLICECTL_CONTEXT")
        .env_remove("SLICECTL_CONFIG")
        .output()
        .expect("run slicectl")
}

fn as_admin<'a>(svc: &'a Service, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--server",
        svc.url_str(),
        "--token",
        svc.admin_token.as_str(),
    ];
    v.extend_from_slice(rest);
    v
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "slicectl failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Status {"),
        "{err}"
    );
    err
}

/// A failed `--wait`: progress lines (stderr, no terminal), then exactly one error line, last.
fn error_after_progress(o: &Output) -> String {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.trim().lines().last(), Some(errors[0]), "{err}");
    errors[0].to_string()
}

#[tokio::test]
async fn admin_tour_tables_json_and_one_line_errors() {
    let svc = Service::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path();
    ok(&ctl(
        c,
        &as_admin(
            &svc,
            &[
                "site",
                "create",
                "mit",
                "--display-name",
                "MIT",
                "--city",
                "Cambridge",
                "--country",
                "US",
            ],
        ),
    ));
    let table = ok(&ctl(c, &as_admin(&svc, &["site", "list"])));
    assert!(
        table.lines().next().unwrap().contains("NAME") && table.contains("mit"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&ctl(
        c,
        &as_admin(&svc, &["-o", "json", "site", "list"]),
    )))
    .unwrap();
    assert_eq!(json[0]["name"], "mit");
    assert_eq!(json[0]["city"], "Cambridge");

    let user = ok(&ctl(
        c,
        &as_admin(&svc, &["user", "create", "alice", "--site", "mit"]),
    ));
    let token = user
        .split_whitespace()
        .find(|w| w.starts_with("sbu_"))
        .expect("token printed once")
        .to_string();
    let enroll = ok(&ctl(
        c,
        &as_admin(&svc, &["node", "token", "--site", "mit", "--ttl", "1h"]),
    ));
    assert!(
        enroll.contains("sbe_") && enroll.contains("node-manager enroll"),
        "{enroll}"
    );

    // No capacity: a clear explanation, one line, non-zero exit.
    let e = one_line_error(&ctl(
        c,
        &[
            "--server",
            svc.url_str(),
            "--token",
            &token,
            "slice",
            "create",
            "exp",
            "--image",
            "slicebed/base:latest",
            "--slivers",
            "2",
        ],
    ));
    assert!(e.contains("no nodes"), "{e}");
    let e = one_line_error(&ctl(c, &as_admin(&svc, &["slice", "show", "nope"])));
    assert!(e.contains("nope"), "{e}");
    let e = one_line_error(&ctl(
        c,
        &as_admin(
            &svc,
            &[
                "slice",
                "create",
                "x",
                "--image",
                "i",
                "--slivers",
                "1",
                "--memory=-5Mi",
            ],
        ),
    ));
    assert!(e.contains("memory"), "{e}");
    let e = one_line_error(&ctl(
        c,
        &[
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "sbu_x",
            "site",
            "list",
        ],
    ));
    assert!(e.contains("cannot reach"), "{e}");
    let e = one_line_error(&ctl(
        c,
        &[
            "--server",
            svc.url_str(),
            "--token",
            &token,
            "site",
            "create",
            "evil",
        ],
    ));
    assert!(e.contains("admin"), "{e}");
}

#[tokio::test]
async fn login_writes_a_private_context_used_by_later_commands() {
    let svc = Service::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path();
    let bad = one_line_error(&ctl(
        c,
        &[
            "--server",
            svc.url_str(),
            "--token",
            "sbu_wrong",
            "login",
            "--name",
            "lab",
        ],
    ));
    assert!(bad.contains("token"), "{bad}");
    assert!(
        !c.join("slicebed/config.toml").exists(),
        "a rejected login saves nothing"
    );
    let out = ok(&ctl(c, &as_admin(&svc, &["login", "--name", "lab"])));
    assert!(out.contains("admin"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.join("slicebed/config.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let who = ok(&ctl(c, &["-o", "json", "whoami"]));
    let v: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(v["user"], "admin");
    assert_eq!(v["role"], "admin");
}

#[tokio::test]
async fn create_wait_shows_running_slivers_or_the_failure_reason() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut nms = Vec::new();
    for s in ["eth", "mit"] {
        make_site(&a, s).await;
        nms.push(NodeManager::start(&svc, s, &unique(s)).await);
    }
    wait_ready(&a, 2).await;
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path();
    let out = ok(&ctl(
        c,
        &as_admin(
            &svc,
            &[
                "slice",
                "create",
                "waited",
                "--image",
                "slicebed/base:latest",
                "--per-site",
                "1",
                "--cpu",
                "0.1",
                "--memory",
                "32Mi",
                "--lease",
                "2d",
                "--wait",
                "--timeout",
                "60s",
                "--",
                "sleep",
                "600",
            ],
        ),
    ));
    assert!(out.contains("running"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&ctl(
        c,
        &as_admin(&svc, &["-o", "json", "slice", "show", "waited"]),
    )))
    .unwrap();
    let slivers = v["slivers"].as_array().unwrap();
    assert_eq!(slivers.len(), 2);
    assert!(slivers.iter().all(|s| s["state"] == "running"), "{v}");
    assert_eq!(v["resources"]["memory_bytes"], 32 * MI);
    let list = ok(&ctl(c, &as_admin(&svc, &["slice", "list"])));
    assert!(
        list.contains("waited") && (list.contains("1d23h") || list.contains("2d")),
        "time left shown: {list}"
    );

    let e = error_after_progress(&ctl(
        c,
        &as_admin(
            &svc,
            &[
                "slice",
                "create",
                "broken",
                "--image",
                "missing:0",
                "--slivers",
                "1",
                "--wait",
                "--timeout",
                "60s",
            ],
        ),
    ));
    // An image the store does not hold is refused at create (images are pinned then), saying
    // how to push it; nothing is created.
    assert!(
        e.contains("missing:0") && e.contains("slicectl image push"),
        "{e}"
    );

    // A program that cannot start fails on the node, and --wait ends with the node's reason.
    let e = error_after_progress(&ctl(
        c,
        &as_admin(
            &svc,
            &[
                "slice",
                "create",
                "broken",
                "--image",
                "slicebed/base:latest",
                "--slivers",
                "1",
                "--restart",
                "never",
                "--wait",
                "--timeout",
                "60s",
                "--",
                "/no/such/program",
            ],
        ),
    ));
    assert!(e.contains("/no/such/program"), "{e}");
    ok(&ctl(c, &as_admin(&svc, &["slice", "delete", "waited"])));
    ok(&ctl(c, &as_admin(&svc, &["slice", "delete", "broken"])));
}

/// The README's main job: `slicectl dev up` brings up service, node managers and a demo slice
/// of real containers that answer on their published ports; `dev down` leaves nothing behind.
#[tokio::test]
async fn dev_up_runs_a_three_site_testbed_and_dev_down_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config");
    let dir = home.path().join("testbed");
    let dir_s = dir.to_str().unwrap();
    let up = ctl(&cfg, &["dev", "up", "--nodes", "3", "--dir", dir_s]);
    let out = String::from_utf8_lossy(&up.stdout).into_owned();
    let guard = DevDown(cfg.clone(), dir.clone());
    assert!(
        up.status.success(),
        "dev up failed: {out}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // The demo slice runs on three sites and the dev context is current.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&cfg, &["-o", "json", "slice", "show", "demo"]))).unwrap();
    let slivers = v["slivers"].as_array().unwrap();
    assert_eq!(slivers.len(), 3);
    let sites: std::collections::BTreeSet<&str> = slivers
        .iter()
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites.len(), 3);
    for s in slivers {
        assert_eq!(s["state"], "running", "{s}");
        let port = s["ports"][0]["host_port"].as_u64().unwrap();
        let mut body = String::new();
        for _ in 0..50 {
            if let Some(b) = common::testbed::http_get(port as u32) {
                body = b;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            body.contains("hello from demo-"),
            "sliver on port {port} answers: {body}"
        );
    }
    // The status page dev up prints shows the three demo sites on its map.
    let page = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status page: http://127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('/').parse::<u32>().ok())
        .and_then(common::testbed::http_get)
        .unwrap_or_else(|| panic!("dev up prints a status page that answers: {out}"));
    for site in ["mit", "eth", "kaist"] {
        assert!(page.contains(&format!("data-site=\"{site}\"")), "{page}");
    }
    drop(guard);
    let leftovers = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=slicebed.slice=demo"])
        .output()
        .unwrap();
    let nodes: Vec<String> = slivers
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_string())
        .collect();
    let mine = String::from_utf8_lossy(&leftovers.stdout);
    for n in &nodes {
        let c = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=slicebed.node={n}")])
            .output()
            .unwrap();
        assert!(
            c.stdout.is_empty(),
            "containers of {n} remain after dev down: {mine}"
        );
        let nets = Command::new("docker")
            .args([
                "network",
                "ls",
                "-q",
                "--filter",
                &format!("label=slicebed.node={n}"),
            ])
            .output()
            .unwrap();
        assert!(
            nets.stdout.is_empty(),
            "networks of {n} remain after dev down"
        );
    }
    assert!(!dir.exists(), "dev down removes its directory");
}

/// Runs `dev down` even when an assertion fails, so a broken test leaves no containers.
struct DevDown(std::path::PathBuf, std::path::PathBuf);

impl Drop for DevDown {
    fn drop(&mut self) {
        let _ = ctl(&self.0, &["dev", "down", "--dir", self.1.to_str().unwrap()]);
    }
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let svc = Service::start().await;
    let ch = slicebed_tests::client::channel(&svc).await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "slicebed.v1.SliceService".into(),
        })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Lists the services over reflection `$v` (v1 or v1alpha: their messages are the same shape).
macro_rules! list_services {
    ($v:ident, $svc:expr) => {{
        use tonic_reflection::pb::$v::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let ch = slicebed_tests::client::channel($svc).await;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(ch)
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .expect(concat!("reflection ", stringify!($v)))
            .into_inner();
        let resp = stream.message().await.unwrap().expect("a response");
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("{resp:?}")
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

fn assert_lists_the_api(version: &str, names: &[String]) {
    for want in [
        "slicebed.v1.SliceService",
        "slicebed.v1.AdminService",
        "slicebed.v1.AccessService",
        "slicebed.v1.NodeService",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "reflection {version}: {want} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_the_api_without_a_token() {
    let svc = Service::start().await;
    assert_lists_the_api("v1", &list_services!(v1, &svc));
    assert_lists_the_api("v1alpha", &list_services!(v1alpha, &svc));
}

/// Stock clients that speak only v1alpha (Python's grpcio-reflection) list the services. Needs
/// python3 with grpcio-reflection (`pip install grpcio-reflection`); CI installs it and sets
/// SLICEBED_REQUIRE_PYTHON_REFLECTION=1 so that a missing module fails instead of skipping.
#[tokio::test]
async fn python_grpcio_reflection_lists_the_api() {
    let has_module = std::process::Command::new("python3")
        .args(["-c", "import grpc_reflection.v1alpha"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_module {
        assert!(
            std::env::var_os("SLICEBED_REQUIRE_PYTHON_REFLECTION").is_none(),
            "python3 with grpcio-reflection is required here"
        );
        eprintln!("SKIP: python3 with grpcio-reflection not found");
        return;
    }
    let svc = Service::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/list_services.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&svc.addr)
        .arg(svc.ca_cert().unwrap())
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = stdout.lines().map(String::from).collect();
    assert_lists_the_api("v1alpha (grpcio-reflection)", &names);
}
