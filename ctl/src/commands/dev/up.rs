//! `slicectl dev up`: starts slice-service, enrolls and starts one node-manager per demo site, makes
//! a `dev` context current and brings up the demo slice. Progress goes to stderr, the result to
//! stdout. Each started process is recorded at once, so an interrupted run can still be stopped.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use slicebed_proto::v1::{
    self as pb, CreateEnrollmentTokenRequest, CreateSiteRequest, ListNodesRequest,
};

use super::{
    down, find_binary,
    launch::{path_arg, run_tool, step, with_log, Started},
    previous_context_file,
    procs::Pids,
    sites::{port_range, DemoSite, SITES},
    CONTEXT,
};
use crate::{
    client::{self, Clients},
    commands::{slice, user::duration},
    config::{Context, Settings},
    ctx::Ctx,
    output,
};

/// Image every demo sliver runs; `node-manager image import` provides it.
const DEMO_IMAGE: &str = "slicebed/base:latest";

pub async fn run(
    nodes: usize,
    dir: &Path,
    timeout_secs: u64,
    kube_site: bool,
    ctx: &Ctx,
) -> Result<()> {
    let dir_flag = super::down::dir_flag(dir);
    if let Some(pids) = Pids::load(dir)? {
        let alive: Vec<String> = pids
            .alive()
            .iter()
            .map(|p| format!("{} pid {}", p.name, p.pid))
            .collect();
        if !alive.is_empty() {
            bail!(
                "a testbed is already running in {} ({}); stop it with: slicectl dev down{dir_flag}",
                dir.display(),
                alive.join(", ")
            );
        }
    }
    let service_bin = find_binary("slice-service")?;
    let node_bin = find_binary("node-manager")?;
    if down::has_leftovers(dir) {
        step(&format!(
            "Cleaning up a stopped testbed in {}",
            dir.display()
        ));
        down::teardown(dir, ctx, true).await?;
    }
    fs::create_dir_all(dir.join("nodes"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut started = Started {
        dir: dir.to_path_buf(),
        pids: Pids::default(),
        children: Vec::new(),
    };
    let timeout = Duration::from_secs(timeout_secs);

    // The service picks a free port and tells us which through service.addr.
    let service_dir = dir.join("service");
    fs::create_dir_all(&service_dir)?;
    step("Starting slice-service");
    let log = dir.join("service.log");
    let args = [
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        path_arg(&service_dir),
        // The status page on a free loopback port too (web.addr says which).
        "--web-listen".into(),
        "127.0.0.1:0".into(),
    ];
    started.spawn("slice-service", &service_bin, &args, &log)?;
    let (addr, admin_token, web) = wait_for_service(&mut started, &service_dir, &log).await?;
    // The service serves TLS with a certificate from its own CA (`--tls auto`, its default),
    // which also signs the nodes' client certificates: everyone here trusts that CA.
    let server = format!("https://{addr}");
    let ca_cert = service_dir.join("ca.crt");
    started.pids.server = Some(server.clone());
    started.pids.save(dir)?;
    step(&format!("slice-service listens on {server}"));
    let status_page = format!("http://{web}/");
    step(&format!("The status page is at {status_page}"));
    let settings = Settings {
        server: server.clone(),
        token: Some(admin_token.clone()),
        ca_cert: Some(ca_cert.clone()),
        context: None,
    };
    let mut c = client::connect(&settings).await?;

    let sites = &SITES[..nodes];
    for (i, site) in sites.iter().enumerate() {
        enroll(&mut c, &node_bin, dir, &server, &ca_cert, i, site).await?;
        started.pids.sites.push(site.name.to_string());
        started.pids.save(dir)?;
    }
    step(&format!(
        "Importing the base image {DEMO_IMAGE} (the first time takes a while)"
    ));
    run_tool(
        &node_bin,
        &["image".into(), "import".into()],
        Duration::from_secs(600),
        "node-manager image import",
    )
    .await?;
    // Isolating slices takes firewall rules, which only root may install. A local testbed run
    // by a user in the docker group still works, with every slice told it is not isolated.
    let isolated = rustix::process::geteuid().is_root();
    if !isolated {
        step("Not root: slices of this local testbed are not isolated from each other or the host");
    }
    for site in sites {
        let state_dir = dir.join("nodes").join(site.name);
        let log = dir.join("nodes").join(format!("{}.log", site.name));
        let mut args = vec!["run".into(), "--state-dir".into(), path_arg(&state_dir)];
        if !isolated {
            args.push("--allow-unisolated".into());
        }
        started.spawn(&format!("node-{}", site.name), &node_bin, &args, &log)?;
    }
    let mut names: Vec<String> = sites.iter().map(|s| format!("node-{}", s.name)).collect();
    let mut demo_sites: Vec<String> = sites.iter().map(|s| s.name.to_string()).collect();
    if kube_site {
        super::kube::start(&mut started, &mut c, &node_bin, &server, &ca_cert).await?;
        names.extend(super::kube::members());
        demo_sites.push(super::sites::KUBE_SITE.name.to_string());
    }
    wait_for_nodes(&mut started, &mut c, &names, timeout).await?;

    use_dev_context(ctx, dir, &server, &ca_cert, &admin_token)?;
    step(&format!("Context {CONTEXT:?} is now current"));

    step("Creating the demo slice (one web server per site)");
    let demo = slice::create(&mut c, ctx, &demo_args(demo_sites, timeout_secs)).await?;
    if !ctx.json() {
        output::out(&next_steps(&server, &status_page, dir, &demo, &dir_flag))?;
    }
    Ok(())
}

/// Waits for `service.addr`, `web.addr` and `admin.token`: (service address, admin token,
/// status page address). Fails early if the service dies.
async fn wait_for_service(
    started: &mut Started,
    service_dir: &Path,
    log: &Path,
) -> Result<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // A half-written file does not parse as an address yet; keep waiting.
    let addr_in = |file: &str| {
        let text = fs::read_to_string(service_dir.join(file)).unwrap_or_default();
        let text = text.trim();
        text.parse::<std::net::SocketAddr>()
            .is_ok()
            .then(|| text.to_string())
    };
    loop {
        started.check_alive()?;
        let token = fs::read_to_string(service_dir.join("admin.token")).unwrap_or_default();
        if let (Some(addr), Some(web)) = (addr_in("service.addr"), addr_in("web.addr")) {
            if !token.trim().is_empty() {
                return Ok((addr, token.trim().to_string(), web));
            }
        }
        if Instant::now() > deadline {
            return Err(with_log(
                "slice-service did not write service.addr, web.addr and admin.token within 30s",
                log,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the site, gets an enrollment token and enrolls the site's node with it.
async fn enroll(
    c: &mut Clients,
    node_bin: &Path,
    dir: &Path,
    server: &str,
    ca_cert: &Path,
    i: usize,
    s: &DemoSite,
) -> Result<()> {
    step(&format!(
        "Creating site {} ({}, {}) and enrolling node-{}",
        s.name, s.city, s.country, s.name
    ));
    let site = s.proto();
    c.admin
        .create_site(CreateSiteRequest { site: Some(site) })
        .await
        .context("creating a demo site")?;
    let req = CreateEnrollmentTokenRequest {
        site: s.name.into(),
        ttl: Some(duration(600)),
    };
    let token = c
        .admin
        .create_enrollment_token(req)
        .await?
        .into_inner()
        .token;
    let (first, last) = port_range(i);
    let args: Vec<String> = [
        "enroll",
        "--server",
        server,
        "--ca-cert",
        &path_arg(ca_cert),
        "--token",
        &token,
        "--name",
        &format!("node-{}", s.name),
        "--state-dir",
        &path_arg(&dir.join("nodes").join(s.name)),
        "--ports",
        &format!("{first}-{last}"),
        "--cpu",
        "1",
        "--memory",
        "1Gi",
        "--disk",
        "10Gi",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    run_tool(
        node_bin,
        &args,
        Duration::from_secs(60),
        &format!("node-manager enroll for node-{}", s.name),
    )
    .await
}

/// Polls ListNodes until every demo node is READY.
async fn wait_for_nodes(
    started: &mut Started,
    c: &mut Clients,
    names: &[String],
    timeout: Duration,
) -> Result<()> {
    step(&format!("Waiting for {} nodes to connect", names.len()));
    let deadline = Instant::now() + timeout;
    loop {
        started.check_alive()?;
        let nodes = c
            .admin
            .list_nodes(ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        let not_ready: Vec<String> = names
            .iter()
            .filter_map(|name| match nodes.iter().find(|n| n.name == *name) {
                Some(n) if n.state() == pb::NodeState::Ready => None,
                Some(n) => Some(format!(
                    "{name} ({})",
                    crate::output::view::node_state(n.state())
                )),
                None => Some(format!("{name} (not enrolled)")),
            })
            .collect();
        if not_ready.is_empty() {
            step(&format!("{} nodes ready", names.len()));
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs = started.dir.join("nodes");
            bail!(
                "nodes not ready after {}s: {} (logs in {}; clean up with: slicectl dev down)",
                timeout.as_secs(),
                not_ready.join(", "),
                logs.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Adds the `dev` context with the admin token and makes it current, remembering the old one.
fn use_dev_context(ctx: &Ctx, dir: &Path, server: &str, ca_cert: &Path, token: &str) -> Result<()> {
    let mut config = ctx.config()?;
    let previous = config
        .current
        .clone()
        .filter(|c| c != CONTEXT)
        .unwrap_or_default();
    fs::write(previous_context_file(dir), previous)?;
    config.contexts.insert(
        CONTEXT.into(),
        Context {
            server: server.into(),
            token: Some(token.into()),
            ca_cert: Some(ca_cert.to_path_buf()),
        },
    );
    config.current = Some(CONTEXT.into());
    config.save(&ctx.config_path)
}

fn demo_args(sites: Vec<String>, timeout_secs: u64) -> slice::CreateArgs {
    slice::CreateArgs {
        name: "demo".into(),
        image: DEMO_IMAGE.into(),
        slivers: None,
        per_site: Some(1),
        sites,
        spread: true,
        pack: false,
        labels: vec![],
        cpu: Some(100),
        memory: Some(64 << 20),
        disk: None,
        lease: None,
        ports: vec![("http".into(), 8080)],
        env: vec![],
        members: vec![],
        restart: None,
        on_node_loss: None,
        replace_after: None,
        best_effort: false,
        description: Some("Demo web servers created by slicectl dev up".into()),
        wait: true,
        timeout: timeout_secs as i64,
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from $HOSTNAME > /tmp/index.html; httpd -f -p 8080 -h /tmp".into(),
        ],
    }
}

fn next_steps(
    server: &str,
    status_page: &str,
    dir: &Path,
    demo: &pb::Slice,
    dir_flag: &str,
) -> String {
    let mut steps: Vec<(String, &str)> = Vec::new();
    // A Docker sliver: Pods on the fake cluster are simulated and answer nothing.
    let kube = super::sites::KUBE_SITE.name;
    if let Some(v) = demo.slivers.iter().find(|v| v.site != kube) {
        if let Some(p) = v.ports.iter().find(|p| p.name == "http") {
            let host = if v.node_address.is_empty() {
                "127.0.0.1"
            } else {
                &v.node_address
            };
            steps.push((
                format!("curl http://{host}:{}/", p.host_port),
                "a sliver answers",
            ));
        }
    }
    steps.push(("slicectl slice list".into(), "your slices and their leases"));
    steps.push(("slicectl slice show demo".into(), "where the demo runs"));
    steps.push(("slicectl node list".into(), "the nodes and their load"));
    steps.push((format!("slicectl dev down{dir_flag}"), "stop it all"));
    let width = steps
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    let lines: String = steps
        .iter()
        .map(|(c, why)| format!("  {c:<width$}  # {why}\n"))
        .collect();
    format!(
        "\nThe local testbed is up: slice-service at {server}, logs and state in {}.\n\
         Context {CONTEXT:?} (admin) is now current.\n\n\
         Status page: {status_page}\n  (the map, nodes and load; paste the admin token from {} \
         to see the demo slice live)\n\nNext steps:\n\n{lines}",
        dir.display(),
        dir.join("service").join("admin.token").display(),
    )
}
