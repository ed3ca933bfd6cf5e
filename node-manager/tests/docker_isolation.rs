//! Sliver isolation on a real node: from a sliver, every path to the host (its bridge's gateway,
//! the host's other addresses) and to another slice's published port through the host is
//! refused, while its own slice peer, a host-side client of the published port and the node
//! manager's firewall bookkeeping (one rule per chain, pruned after a crash) keep working.
//! Needs root, iptables and the Docker engine; skips with a message otherwise.

mod common;
use common::{cleanup, Guard};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use node_manager::domain::{
    PortMapping, ReportedState, Resources, RestartPolicy, SliverReport, SliverSpec,
};
use node_manager::image::{self, DEFAULT_TAG};
use node_manager::reconciler::Reconciler;
use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;
use tokio::io::AsyncWriteExt;

async fn engine(node: &str) -> Option<DockerRuntime> {
    if Command::new("iptables").arg("--version").output().is_err() {
        eprintln!("skipping: no iptables command");
        return None;
    }
    let rt = DockerRuntime::connect(None, format!("{node}-{}", std::process::id()))
        .await
        .ok()?;
    if rt.ping().await.is_err() {
        eprintln!("skipping: no Docker engine");
        return None;
    }
    if let Err(e) = image::ensure(&rt, DEFAULT_TAG, false).await {
        eprintln!("skipping: no base image ({e})");
        return None;
    }
    cleanup(&rt).await;
    Some(rt)
}

fn spec(id: &str, slice: &str, command: &str) -> SliverSpec {
    SliverSpec {
        sliver_id: id.into(),
        slice: slice.into(),
        index: 0,
        image: DEFAULT_TAG.into(),
        command: vec!["sh".into(), "-c".into(), command.into()],
        env: BTreeMap::new(),
        resources: Resources {
            cpu_millis: 200,
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 30,
        },
        ports: vec![],
        restart: RestartPolicy::Never,
        generation: 1,
        lease_expires_at: None,
        image_digest: String::new(),
        pull: None,
    }
}

/// A sliver serving `word` over HTTP on port 8080.
fn server(id: &str, slice: &str, word: &str) -> SliverSpec {
    spec(
        id,
        slice,
        &format!("mkdir -p /www && echo {word} > /www/i && exec httpd -f -p 8080 -h /www"),
    )
}

/// Passes until every sliver of `d` runs (bounded).
async fn until_running(rec: &mut Reconciler<DockerRuntime>, d: &BTreeMap<String, SliverSpec>) {
    let mut seen: BTreeMap<String, SliverReport> = BTreeMap::new();
    for _ in 0..200 {
        for r in rec.pass(Some(d)).await.unwrap() {
            seen.insert(r.sliver_id.clone(), r);
        }
        if d.keys().all(|id| {
            seen.get(id)
                .is_some_and(|r| r.state == ReportedState::Running)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slivers never all ran: {seen:?}");
}

/// Runs `sh -c script` in the container and returns what it printed (stdout and stderr).
async fn run_in(rt: &DockerRuntime, container: &str, script: &str) -> String {
    let docker = rt.docker();
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["sh".to_string(), "-c".to_string(), script.to_string()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&chunk.to_string());
        }
    }
    text
}

/// What the sliver gets for `GET /i` from `host:port` (nc gives up after 3 s).
async fn fetch(rt: &DockerRuntime, container: &str, host: &str, port: u16) -> String {
    run_in(
        rt,
        container,
        &format!("printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>&1; true"),
    )
    .await
}

/// The IPv4 gateway of a network.
async fn gateway(rt: &DockerRuntime, network: &str) -> String {
    let n = rt
        .docker()
        .inspect_network(network, None)
        .await
        .expect("inspect the slice network");
    n.ipam
        .and_then(|i| i.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway)
        .expect("the slice network has a gateway")
}

/// The host's IPv4 addresses that are neither loopback nor on a Docker bridge.
fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let dev = w.nth(1)?.to_string();
            let addr = w.nth(1)?.split('/').next()?.to_string();
            let ip: Ipv4Addr = addr.parse().ok()?;
            (!ip.is_loopback() && !dev.starts_with("br-") && dev != "docker0").then_some(addr)
        })
        .collect()
}

/// The iptables rules (`-S` lines) of INPUT and DOCKER-USER that mention `what`.
fn rules_mentioning(what: &str) -> Vec<String> {
    ["INPUT", "DOCKER-USER"]
        .iter()
        .flat_map(|chain| {
            let out = Command::new("iptables")
                .args(["-w", "-S", chain])
                .output()
                .expect("iptables -S");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(what))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs an `iptables -S` style line (`-A CHAIN ...` turned into `-D`/`-I`), quotes undone.
fn iptables_line(line: &str) {
    let mut args = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => args.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    args.push(word);
    let ok = Command::new("iptables")
        .arg("-w")
        .args(args.iter().filter(|a| !a.is_empty()))
        .status()
        .expect("iptables")
        .success();
    assert!(ok, "iptables {line}");
}

/// A host listener on every address answering "host-secret" to whatever connects.
async fn host_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"host-secret\n").await;
        }
    });
    (port, task)
}

/// A free TCP port on the host (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn slivers_reach_neither_the_host_nor_other_slices_through_it() {
    let Some(rt) = engine("nmiso-a").await else {
        return;
    };
    let _guard = Guard(rt.clone());
    let node = rt.node().to_string();
    let (host_port, listener) = host_listener().await;
    let published = free_port();
    let mut b0 = server("b0", "b", "slice-b");
    b0.ports = vec![PortMapping {
        name: "http".into(),
        container_port: 8080,
        host_port: published,
    }];
    let d: BTreeMap<String, SliverSpec> = [
        spec("a0", "a", "exec sleep 600"),
        server("a1", "a", "peer-a"),
        b0,
    ]
    .into_iter()
    .map(|s| (s.sliver_id.clone(), s))
    .collect();
    let mut rec = Reconciler::new(rt.clone());
    until_running(&mut rec, &d).await;
    let a0 = format!("sb-{node}-a0");
    let gw = gateway(&rt, &format!("sb-{node}-a")).await;

    // What stays open: the slice's own peer, and the published port from the host.
    let peer = run_in(&rt, &format!("sb-{node}-a1"), "hostname -i").await;
    let peer = peer.trim();
    assert!(
        fetch(&rt, &a0, peer, 8080).await.contains("peer-a"),
        "a sliver must reach its slice peer at {peer}:8080"
    );
    let mut from_host = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", published)).await {
            use tokio::io::AsyncReadExt;
            let _ = s.write_all(b"GET /i HTTP/1.0\r\n\r\n").await;
            let _ = s.read_to_string(&mut from_host).await;
            if from_host.contains("slice-b") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        from_host.contains("slice-b"),
        "a host-side client must reach slice b's published port {published}: got {from_host:?}"
    );

    // What is closed: the host on its bridge gateway and its own addresses, and slice b's
    // published port through any of them.
    let mut open = Vec::new();
    let mut targets = vec![gw.clone()];
    targets.extend(host_addresses());
    for addr in &targets {
        let got = fetch(&rt, &a0, addr, host_port).await;
        if got.contains("host-secret") {
            open.push(format!("host listener at {addr}:{host_port}"));
        }
        let got = fetch(&rt, &a0, addr, published).await;
        if got.contains("slice-b") {
            open.push(format!("slice b's published port at {addr}:{published}"));
        }
    }
    listener.abort();
    assert!(
        open.is_empty(),
        "sliver a0 of slice a reached what it must not: {open:?}"
    );

    // Bookkeeping: one rule per chain per slice network, labelled with node and slice.
    let label = format!("slicebed:{node}/a:");
    assert_eq!(
        rules_mentioning(&label).len(),
        2,
        "one INPUT and one DOCKER-USER rule for slice a: {:?}",
        rules_mentioning(&label)
    );
    rt.ensure_network("a").await.unwrap();
    assert_eq!(
        rules_mentioning(&label).len(),
        2,
        "ensuring again adds none"
    );

    // The slices go away: containers, networks and every rule of this node with them.
    let reports = rec.pass(Some(&BTreeMap::new())).await.unwrap();
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.state == ReportedState::Deleted)
            .count(),
        3
    );
    assert!(rt.list_networks().await.unwrap().is_empty());
    assert_eq!(
        rules_mentioning(&format!("slicebed:{node}/")),
        Vec::<String>::new(),
        "no rule of node {node} outlives its networks"
    );
}

#[tokio::test]
async fn a_restarted_agent_prunes_rules_of_networks_gone_meanwhile() {
    let Some(rt) = engine("nmiso-b").await else {
        return;
    };
    let _guard = Guard(rt.clone());
    let node = rt.node().to_string();
    rt.ensure_network("gone").await.unwrap();
    rt.ensure_network("kept").await.unwrap();
    assert_eq!(rules_mentioning(&format!("slicebed:{node}/")).len(), 4);
    // The agent died; someone removed a network behind its back.
    rt.docker()
        .remove_network(&format!("sb-{node}-gone"))
        .await
        .unwrap();
    let restarted = DockerRuntime::connect(None, node.clone()).await.unwrap();
    assert_eq!(restarted.list_networks().await.unwrap(), vec!["kept"]);
    assert_eq!(
        rules_mentioning(&format!("slicebed:{node}/gone:")),
        Vec::<String>::new(),
        "the rules of a vanished network are pruned"
    );
    let kept = format!("slicebed:{node}/kept:");
    assert_eq!(rules_mentioning(&kept).len(), 2);

    // Someone deleted one rule and doubled the other: the next listing repairs both.
    let input = rules_mentioning(&kept)
        .into_iter()
        .find(|r| r.starts_with("-A INPUT "))
        .expect("the INPUT rule");
    let forward = rules_mentioning(&kept)
        .into_iter()
        .find(|r| r.starts_with("-A DOCKER-USER "))
        .expect("the DOCKER-USER rule");
    iptables_line(&input.replacen("-A INPUT", "-D INPUT", 1));
    iptables_line(&forward.replacen("-A DOCKER-USER", "-I DOCKER-USER", 1));
    assert_eq!(rules_mentioning(&kept).len(), 2, "one gone, one doubled");
    restarted.list_networks().await.unwrap();
    let mut repaired = rules_mentioning(&kept);
    repaired.sort();
    assert_eq!(repaired, {
        let mut want = vec![forward, input];
        want.sort();
        want
    });
    cleanup(&restarted).await;
    assert_eq!(
        rules_mentioning(&format!("slicebed:{node}/")),
        Vec::<String>::new()
    );
}

/// Reads what `addr:port` answers to `GET /i` from the host; `None` if it cannot connect.
async fn host_fetch(addr: &str, port: u16) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect((addr, port));
    let mut s = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /i HTTP/1.0\r\n\r\n").await.ok()?;
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut text)).await;
    Some(text)
}

#[tokio::test]
async fn ports_are_published_on_the_announced_address_only() {
    let Some(rt) = engine("nmiso-c").await else {
        return;
    };
    let _guard = Guard(rt.clone());
    let Some(other) = host_addresses().into_iter().next() else {
        eprintln!("skipping: the host has no address but loopback");
        return;
    };
    // A name or an address of someone else cannot be bound: every address, as before.
    assert_eq!(
        rt.clone().with_publish_address("192.0.2.254").publish_ip(),
        std::net::IpAddr::from([0, 0, 0, 0])
    );
    let rt = rt.with_publish_address("127.0.0.1");
    let published = free_port();
    let mut s = server("p0", "p", "published");
    s.ports = vec![PortMapping {
        name: "http".into(),
        container_port: 8080,
        host_port: published,
    }];
    let d = BTreeMap::from([(s.sliver_id.clone(), s)]);
    let mut rec = Reconciler::new(rt.clone());
    until_running(&mut rec, &d).await;
    let mut answer = None;
    for _ in 0..50 {
        answer = host_fetch("127.0.0.1", published).await;
        if answer.as_deref().is_some_and(|a| a.contains("published")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elsewhere = host_fetch(&other, published).await;
    rec.pass(Some(&BTreeMap::new())).await.unwrap();
    assert!(
        answer.as_deref().is_some_and(|a| a.contains("published")),
        "the port answers on the announced address 127.0.0.1: {answer:?}"
    );
    assert!(
        !elsewhere
            .as_deref()
            .is_some_and(|a| a.contains("published")),
        "the port must not answer on {other}, which the node does not announce: {elsewhere:?}"
    );
}
