//! A researcher's access to a Kubernetes sliver is the same as to a Docker one, and deleting
//! the slice leaves nothing on the cluster (the lease ending with the agent down is
//! kube_lease.rs). The Kubernetes site is the fake API server's
//! real binary with `--docker-exec` (every running Pod backed by a Docker container of its
//! image, so exec, copy and logs reach a real process) and one cluster agent enrolled with
//! `node-manager enroll --cluster`; the Docker site is a plain node manager. Everything is done
//! with the real `slicectl` and checked with `kubectl`, as a researcher and a site admin would.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::make_site;
use common::testbed::{wait_running, web_slice};
use slicebed_tests::kube::{
    member_ready, skip_without_kubectl, slicectl, FakeKubeProcess, KubeAgent, MEMBER,
};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{bin, wait_for, Clients, Service};

/// Prints a line naming its host, serves HTTP on 8080, and says `mark-seen` each time
/// `/tmp/mark` appears: a process whose log grows when a researcher pokes it.
const SCRIPT: &str =
    "echo started-on-$HOSTNAME; echo hi > /tmp/index.html; httpd -p 8080 -h /tmp; \
    while true; do if [ -f /tmp/mark ]; then echo mark-seen; rm -f /tmp/mark; fi; sleep 0.2; done";

/// slicectl's stdout, after checking it succeeded.
fn ok(svc: &Service, args: &[&str]) -> String {
    let out = slicectl(svc, &svc.admin_token, args);
    assert!(
        out.status.success(),
        "slicectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Docker containers the fake runs behind a Pod (`namespace/name`).
fn backing_containers(pod: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=slicebed.fake-kube.pod={pod}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn exec_logs_cp_and_endpoints_reach_a_kubernetes_sliver_and_delete_leaves_nothing() {
    if skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKubeProcess::start(tmp.path(), 1, true).await;
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "dock").await;
    make_site(&admin, "kube").await;
    let dock = NodeManager::start(&svc, "dock", &unique("dock")).await;
    let _agent = KubeAgent::cluster(
        &svc,
        &admin,
        "kube",
        "lab",
        (29640, 29659),
        tmp.path(),
        &fake.kubeconfig,
    )
    .await;
    let member = member_ready(&admin).await;

    let name = unique("reach");
    let mut req = web_slice(&name, 1);
    req.command = vec!["sh".into(), "-c".into(), SCRIPT.into()];
    admin.slices.clone().create_slice(req).await.unwrap();
    let s = wait_running(&admin, &name).await;
    let on = |node: &str| {
        s.slivers
            .iter()
            .find(|v| v.node == node)
            .unwrap_or_else(|| panic!("no sliver on {node}: {:?}", s.slivers))
            .index
    };
    let (k, d) = (on(MEMBER), on(&dock.name));
    let pods = fake.items("pods", &format!("slicebed.dev/slice={name}"));
    assert_eq!(pods.len(), 1, "one Pod for the Kubernetes sliver");
    let pod_name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let pod_ns = pods[0]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();

    // exec fans out to both sites: each sliver's own output and its exit code 3.
    let out = slicectl(
        &svc,
        &svc.admin_token,
        &[
            "-o",
            "json",
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo $HOSTNAME; exit 3",
        ],
    );
    assert!(!out.status.success(), "an exit code 3 is not a success");
    let runs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per sliver"))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        assert_eq!(r["status"], "exited", "{r}");
        assert_eq!(r["exit_code"], 3, "{r}");
        let host = r["stdout"].as_str().unwrap().trim().to_string();
        if r["index"] == k {
            assert_eq!(r["node"], MEMBER);
            // The same name a Docker sliver gets: the Pod sets spec.hostname.
            assert_eq!(host, format!("{name}-{k}"), "the sliver's hostname");
        } else {
            assert_eq!(r["index"], d);
            assert_eq!(host, format!("{name}-{d}"));
        }
    }

    // logs: what the Kubernetes sliver's command printed, and new lines while following.
    let sliver = format!("{name}/{k}");
    let started = format!("started-on-{name}-{k}");
    let text = wait_for(
        "the command's first line in its logs",
        Duration::from_secs(30),
        || async {
            let t = ok(&svc, &["logs", &sliver]);
            t.contains(&started).then_some(t)
        },
    )
    .await;
    assert!(
        !text.contains("fake-kube:"),
        "the command's own output, not simulated lines: {text}"
    );
    let mut follow = Command::new(bin("slicectl"))
        .args(["--server", svc.url_str(), "--token", &svc.admin_token])
        .args(["logs", "-f", &sliver])
        .env("XDG_CONFIG_HOME", "/nonexistent-slicebed-test")
        .env("SLICECTL_CA_CERT", &slicebed_tests::service::test_ca().0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("slicectl logs -f");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = std::io::BufReader::new(follow.stdout.take().unwrap());
    let sink = seen.clone();
    std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    wait_for("the follow started", Duration::from_secs(30), || async {
        seen.lock().unwrap().contains("started-on-").then_some(())
    })
    .await;
    ok(
        &svc,
        &[
            "exec",
            &name,
            "--sliver",
            &k.to_string(),
            "--",
            "touch",
            "/tmp/mark",
        ],
    );
    wait_for(
        "a line written after the follow began",
        Duration::from_secs(30),
        || async { seen.lock().unwrap().contains("mark-seen").then_some(()) },
    )
    .await;
    let _ = follow.kill();
    let _ = follow.wait();
    let tail = ok(&svc, &["logs", &sliver, "--tail", "1"]);
    assert_eq!(tail.lines().collect::<Vec<_>>(), ["mark-seen"], "{tail}");

    // The environment of an exec reaches the command there too.
    let out = ok(
        &svc,
        &[
            "exec",
            &name,
            "--sliver",
            &k.to_string(),
            "--env",
            "GREETING=hi there",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\"",
        ],
    );
    assert!(out.lines().any(|l| l.ends_with("hi there")), "{out}");

    // cp into the Kubernetes sliver and back: the same bytes.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let src = tmp.path().join("payload.bin");
    std::fs::write(&src, &payload).unwrap();
    ok(
        &svc,
        &["cp", src.to_str().unwrap(), &format!("{sliver}:/tmp")],
    );
    let back = tmp.path().join("back");
    std::fs::create_dir(&back).unwrap();
    ok(
        &svc,
        &[
            "cp",
            &format!("{sliver}:/tmp/payload.bin"),
            back.to_str().unwrap(),
        ],
    );
    let got = std::fs::read(back.join("payload.bin")).expect("the copied-back file");
    assert!(got == payload, "the bytes came back changed");
    // From a path that does not exist there: refused, naming it.
    let out = slicectl(
        &svc,
        &svc.admin_token,
        &[
            "cp",
            &format!("{sliver}:/tmp/no-such-file"),
            back.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such-file"),
        "{err}"
    );
    // Into a path that is not a directory there: refused, saying so.
    let out = slicectl(
        &svc,
        &svc.admin_token,
        &[
            "cp",
            src.to_str().unwrap(),
            &format!("{sliver}:/tmp/payload.bin"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a directory"),
        "{err}"
    );

    // endpoints: the named port of the Kubernetes sliver at its node's address and the port
    // the service assigned, which is the Pod's hostPort.
    let eps: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&svc, &["-o", "json", "endpoints", &name, "http"])).unwrap();
    assert_eq!(eps.len(), 2, "{eps:?}");
    let e = eps.iter().find(|e| e["index"] == k).expect("kube endpoint");
    assert_eq!(e["node"], MEMBER);
    assert_eq!(e["address"], member.address.as_str());
    assert_eq!(e["container_port"], 8080);
    let port = e["port"].as_u64().unwrap();
    assert!(
        (29640..=29659).contains(&port),
        "in the cluster's range: {e}"
    );
    let pod = &fake.items("pods", &format!("slicebed.dev/slice={name}"))[0];
    let host_port = pod["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["containerPort"] == 8080)
        .map(|p| p["hostPort"].as_u64().unwrap());
    assert_eq!(host_port, Some(port), "published as the Pod's hostPort");
    assert_eq!(e["endpoint"], format!("{}:{port}", member.address));
    let de = eps
        .iter()
        .find(|e| e["index"] == d)
        .expect("docker endpoint");
    let dp = de["port"].as_u64().unwrap() as u32;
    assert!((dock.ports.0..=dock.ports.1).contains(&dp), "{de}");

    // Delete: the Pod, its namespace and the container behind it go; nothing is left.
    ok(&svc, &["slice", "delete", &name]);
    let selector = format!("slicebed.dev/slice={name}");
    wait_for(
        "no Pod and no namespace of the deleted slice",
        Duration::from_secs(60),
        || async {
            (fake.items("pods", &selector).is_empty()
                && fake.items("namespaces", &selector).is_empty())
            .then_some(())
        },
    )
    .await;
    assert!(
        fake.kubectl_json(&["get", "namespaces"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["metadata"]["name"] != pod_ns.as_str()),
        "namespace {pod_ns} left behind"
    );
    let pod_ref = format!("{pod_ns}/{pod_name}");
    wait_for(
        "the Pod's container removed",
        Duration::from_secs(30),
        || async { backing_containers(&pod_ref).is_empty().then_some(()) },
    )
    .await;
}
