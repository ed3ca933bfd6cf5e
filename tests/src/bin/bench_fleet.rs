//! `bench_fleet`: what the control plane costs at fleet scale.
//!
//! Starts one real `slice-service` (a separate process; SQLite, or PostgreSQL with
//! `--postgres URL` or `SLICEBED_TEST_POSTGRES`) and N simulated nodes in this process, each a
//! real gRPC client of the node API on its own connection (mutual TLS with the certificate it
//! got at enrollment; see `bench_fleet/sim.rs`). Phases, one line of figures each:
//!
//! 1. **enroll**: N nodes over `--sites` sites, one one-time token each (nodes/s);
//! 2. **connect**: every node opens its control channel (at most `--connect-concurrency` at
//!    once until welcomed); time until `ListNodes` (paged) shows all of them ready;
//! 3. **liveness**: the fleet heartbeats for `--liveness-secs`; the service's CPU (% of one
//!    core) and resident memory;
//! 4. **create**: 1-sliver and 10-sliver slices at 16 and 64 concurrent clients (own
//!    connections, several users) for `--phase-secs` each (or `--creates` slices): committed
//!    slices/s, slivers/s, p50/p99, service CPU per create; nodes answer every upsert RUNNING;
//! 5. **reads**: GetSlice, ListSlices (of a user owning 20 of the live slices) and WhoAmI, 64
//!    in flight each;
//! 6. **delete**: every slice, half at 16 and half at 64 clients; nodes answer the removes;
//! 7. **restart**: SIGKILL, start again on the same address and database while the nodes
//!    redial with backoff; time until all are ready again.
//!
//! Then a markdown table of every figure. `--only create,reads` skips the other optional
//! phases (enroll and connect always run). `--service-bin PATH` (or `SLICEBED_SERVICE_BIN`)
//! measures another `slice-service` build, e.g. an older one, with the same load generator.
//!
//! Usage: `cargo build --release --workspace --bins && SLICEBED_BIN_DIR=target/release
//! target/release/bench_fleet --nodes 1000`

#[path = "bench_fleet/args.rs"]
mod args;
#[path = "bench_fleet/load.rs"]
mod load;
#[path = "bench_fleet/proc.rs"]
mod proc;
#[path = "bench_fleet/sim.rs"]
mod sim;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::admin_service_client::AdminServiceClient;
use slicebed_proto::v1::slice_service_client::SliceServiceClient;
use slicebed_tests::client::Bearer;
use slicebed_tests::{Clients, Service};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use args::Args;
use load::{closed_loop, Outcome};
use proc::CpuSpan;
use sim::{Fleet, SimNode, Target};

type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Researchers creating slices (their home sites spread over the sites).
const CREATORS: usize = 8;
/// Client connections for the create, read and delete load.
const CLIENTS: usize = 64;
/// Slices the ListSlices user owns.
const LISTER_SLICES: usize = 20;

/// One slice the benchmark created: its name, owner (index into the bearers) and size.
#[derive(Debug, Clone)]
struct Made {
    name: String,
    owner: usize,
    slivers: u32,
}

struct Bench {
    args: Args,
    svc: Service,
    admin: Admin,
    /// One connection per load client.
    pool: Arc<Vec<Channel>>,
    /// The creators' tokens, then the lister's.
    bearers: Arc<Vec<Bearer>>,
    made: Arc<Mutex<Vec<Made>>>,
    /// Summary rows: phase, measure, figure.
    rows: Vec<(String, String, String)>,
}

fn main() {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let nofile = proc::raise_nofile();
    if let Some(pg) = &args.postgres {
        // Read by the harness when it makes the service's fresh database.
        std::env::set_var("SLICEBED_TEST_POSTGRES", pg);
    }
    // The harness runs `$SLICEBED_BIN_DIR/slice-service`: point it at the chosen build.
    let _bin_dir = args.service_bin.as_ref().map(|p| {
        let p = std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(&p, dir.path().join("slice-service")).expect("symlink");
        std::env::set_var("SLICEBED_BIN_DIR", dir.path());
        dir
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(args, nofile));
}

async fn run(args: Args, nofile: u64) {
    let n = args.nodes;
    let config = format!(
        "[limits]\nmax_connections = {}\nfirst_request_timeout = \"30s\"\n",
        (2 * n + 1000).max(4096)
    );
    let svc = Service::start_with(&config).await;
    let mut b = Bench::setup(args, svc).await;
    let database = if b.svc.database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let build = build_info();
    println!("bench_fleet: {n} nodes, {database}, {build}; open files limit {nofile}");

    let nodes = b.enroll().await;
    let fleet = b.connect(nodes).await;
    if b.args.runs("liveness") {
        b.liveness(&fleet).await;
    }
    if b.args.runs("create") {
        b.create(&fleet).await;
    }
    if b.args.runs("reads") {
        b.reads().await;
    }
    if b.args.runs("delete") {
        b.delete(&fleet).await;
    }
    if b.args.runs("restart") {
        b.restart(&fleet).await;
    }
    fleet.stop().await;

    println!();
    println!("| phase | measure | figure |");
    println!("|---|---|---|");
    println!("| | nodes | {n} |");
    println!("| | database | {database} |");
    println!("| | build | {build} |");
    for (phase, measure, figure) in &b.rows {
        println!("| {phase} | {measure} | {figure} |");
    }
}

/// What was measured: the service binary and the tree this benchmark was built from.
fn build_info() -> String {
    let bin = slicebed_tests::bin("slice-service");
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let version = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let tree = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(h) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{h}{}", if dirty { "+changes" } else { "" })
        }
        None => "unknown".into(),
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "service {} ({version}), bench {profile} build in tree {tree}",
        bin.display()
    )
}

fn site_name(i: usize) -> String {
    format!("site-{i:02}")
}

fn spec(name: &str, slivers: u32) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        command: vec!["sleep".into(), "infinity".into()],
        resources: Some(pb::Resources {
            cpu_millis: 1,
            memory_bytes: 4 << 20,
            disk_bytes: 1 << 20,
        }),
        placement: Some(pb::PlacementRequest {
            slivers,
            ..Default::default()
        }),
        lease: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Nodes the service shows ready, all nodes, and the CPU all of them have allocated.
async fn census(admin: &Admin) -> Result<(usize, usize, i64), tonic::Status> {
    let (mut ready, mut all, mut allocated) = (0, 0, 0);
    let mut page_token = String::new();
    loop {
        let page = admin
            .clone()
            .list_nodes(pb::ListNodesRequest {
                site: String::new(),
                page_token,
            })
            .await?
            .into_inner();
        for node in &page.nodes {
            all += 1;
            ready += usize::from(node.state == pb::NodeState::Ready as i32);
            allocated += node.allocated.as_ref().map_or(0, |r| r.cpu_millis);
        }
        if page.next_page_token.is_empty() {
            return Ok((ready, all, allocated));
        }
        page_token = page.next_page_token;
    }
}

/// Polls `f` every `every` until it holds; the time it took, or None after `limit`.
async fn until<F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("not within the limit".into(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}

impl Bench {
    async fn setup(args: Args, svc: Service) -> Self {
        let admin = Clients::admin(&svc).await.admin;
        for i in 0..args.sites {
            admin
                .clone()
                .create_site(pb::CreateSiteRequest {
                    site: Some(pb::Site {
                        name: site_name(i),
                        enabled: true,
                        ..Default::default()
                    }),
                })
                .await
                .expect("create site");
        }
        let mut bearers = Vec::new();
        for i in 0..=CREATORS {
            let name = if i < CREATORS {
                format!("user{i}")
            } else {
                "lister".into()
            };
            let token = admin
                .clone()
                .create_user(pb::CreateUserRequest {
                    name,
                    role: pb::Role::User as i32,
                    site: site_name(i % args.sites),
                    token_ttl: None,
                })
                .await
                .expect("create user")
                .into_inner()
                .token;
            bearers.push(Bearer::new(&token).expect("ascii token"));
        }
        let mut pool = Vec::new();
        for _ in 0..CLIENTS {
            pool.push(slicebed_tests::client::channel(&svc).await);
        }
        Bench {
            args,
            svc,
            admin,
            pool: Arc::new(pool),
            bearers: Arc::new(bearers),
            made: Arc::default(),
            rows: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.svc.pid().expect("the service runs")
    }

    fn row(&mut self, phase: &str, measure: &str, figure: String) {
        self.rows.push((phase.into(), measure.into(), figure));
    }

    /// Phase 1: one-time tokens, then N enrollments, each on its own connection.
    async fn enroll(&mut self) -> Vec<Arc<SimNode>> {
        let n = self.args.nodes;
        let sites = self.args.sites;
        let conc = self.args.connect_concurrency;
        let t = Instant::now();
        let admin = self.admin.clone();
        let tokens: Vec<(usize, String)> = futures::stream::iter(0..n)
            .map(|i| {
                let mut admin = admin.clone();
                async move {
                    let r = admin
                        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                            site: site_name(i % sites),
                            ttl: None,
                        })
                        .await
                        .expect("enrollment token");
                    (i, r.into_inner().token)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let token_rate = n as f64 / t.elapsed().as_secs_f64();

        let cpu = CpuSpan::start(self.pid());
        let t = Instant::now();
        let svc = &self.svc;
        let results: Vec<_> = futures::stream::iter(tokens)
            .map(|(i, token)| async move {
                let name = format!("n{i:05}");
                let req = pb::EnrollRequest {
                    name: name.clone(),
                    address: "127.0.0.1".into(),
                    capacity: Some(sim::CAPACITY),
                    port_range: Some(pb::PortRange {
                        first: sim::PORTS.0,
                        last: sim::PORTS.1,
                    }),
                    labels: Default::default(),
                    agent_version: "bench-fleet".into(),
                    csr_pem: String::new(), // `enroll` makes the key and CSR
                };
                let start = Instant::now();
                let r = slicebed_tests::node::enroll(svc, &token, req).await;
                (name, r, start.elapsed())
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        let elapsed = t.elapsed();
        let used = cpu.stop();
        let mut out = Outcome {
            elapsed,
            ..Default::default()
        };
        let mut nodes = Vec::new();
        for (name, r, took) in results {
            match r {
                Ok(cred) => {
                    out.ok += 1;
                    out.latencies.push(took);
                    nodes.push(Arc::new(SimNode::new(name, &cred)));
                }
                Err(s) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(format!("{s}"));
                }
            }
        }
        out.latencies.sort();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        println!(
            "enroll: {} nodes over {sites} sites in {:.2} s: {:.0} nodes/s, {}, {conc} at once; \
             service CPU {:.1} ms per node; tokens beforehand {token_rate:.0}/s{}",
            out.ok,
            elapsed.as_secs_f64(),
            out.rate(),
            out.percentiles(),
            used.ms_per(out.ok),
            out.error_note()
        );
        self.row("enroll", "nodes/s", format!("{:.0}", out.rate()));
        self.row("enroll", "latency", out.percentiles());
        self.row(
            "enroll",
            "service CPU per node",
            format!("{:.1} ms", used.ms_per(out.ok)),
        );
        nodes
    }

    /// Phase 2: every node opens its control channel; until the service shows all ready.
    async fn connect(&mut self, nodes: Vec<Arc<SimNode>>) -> Fleet {
        let n = nodes.len();
        let ca = self.svc.ca_cert().expect("a TLS service");
        let target = Target {
            url: self.svc.url(),
            ca_pem: Arc::new(std::fs::read(ca).expect("CA certificate")),
        };
        let cpu = CpuSpan::start(self.pid());
        let t = Instant::now();
        let fleet = Fleet::start(nodes, target, self.args.connect_concurrency);
        let limit = Duration::from_secs(120 + n as u64 / 20);
        let welcomed = until(limit, Duration::from_millis(50), || {
            let w = fleet.welcomed_since(1);
            async move { w == n }
        })
        .await;
        let admin = self.admin.clone();
        let ready = until(limit, Duration::from_millis(250), || {
            let admin = admin.clone();
            async move { matches!(census(&admin).await, Ok((r, _, _)) if r == n) }
        })
        .await
        .map(|_| t.elapsed());
        let used = cpu.stop();
        let rss = proc::rss_mib(self.pid()).unwrap_or(0.0);
        let rate = ready.map_or(0.0, |d| n as f64 / d.as_secs_f64());
        println!(
            "connect: {n} nodes welcomed in {}, all ready per ListNodes in {} ({rate:.0} nodes/s, \
             {} at once); {} failed attempts; service CPU {:.1} ms per node, RSS {rss:.0} MiB",
            secs(welcomed),
            secs(ready),
            self.args.connect_concurrency,
            fleet.counters.failed_sessions.load(Relaxed),
            used.ms_per(n as u64),
        );
        self.row("connect", "all ready", secs(ready));
        self.row("connect", "nodes/s", format!("{rate:.0}"));
        fleet
    }

    /// Phase 3: the fleet heartbeats; the service's CPU and memory meanwhile.
    async fn liveness(&mut self, fleet: &Fleet) {
        let pid = self.pid();
        let beats = fleet.counters.heartbeats.load(Relaxed);
        let cpu = CpuSpan::start(pid);
        let end = Instant::now() + self.args.liveness;
        let mut max_rss: f64 = 0.0;
        while Instant::now() < end {
            max_rss = max_rss.max(proc::rss_mib(pid).unwrap_or(0.0));
            tokio::time::sleep(Duration::from_secs(1).min(end - Instant::now())).await;
        }
        let used = cpu.stop();
        let rss = proc::rss_mib(pid).unwrap_or(0.0);
        max_rss = max_rss.max(rss);
        let beats = fleet.counters.heartbeats.load(Relaxed) - beats;
        let ready = census(&self.admin).await.map(|c| c.0).unwrap_or(0);
        println!(
            "liveness: {} nodes for {:.0} s ({:.0} heartbeats/s): service CPU {:.1} % of a core, \
             RSS {rss:.0} MiB (max {max_rss:.0}); {ready} ready at the end; load generator RSS \
             {:.0} MiB",
            fleet.nodes.len(),
            used.wall.as_secs_f64(),
            beats as f64 / used.wall.as_secs_f64(),
            used.percent(),
            proc::own_rss_mib()
        );
        self.row(
            "liveness",
            "service CPU",
            format!("{:.1} % of a core", used.percent()),
        );
        self.row("liveness", "service RSS", format!("{rss:.0} MiB"));
    }

    /// Runs one create load: `slivers`-sliver slices from `clients` clients.
    async fn create_run(&mut self, fleet: &Fleet, slivers: u32, clients: usize) {
        let (pool, bearers, made) = (self.pool.clone(), self.bearers.clone(), self.made.clone());
        let upserts = fleet.counters.upserts.load(Relaxed);
        let cpu = CpuSpan::start(self.pid());
        let out = closed_loop(
            clients,
            self.args.phase,
            self.args.creates,
            move |w, seq| {
                let owner = w % CREATORS;
                let mut c = SliceServiceClient::with_interceptor(
                    pool[w % pool.len()].clone(),
                    bearers[owner].clone(),
                );
                let name = format!("s{slivers}c{clients}-{w}-{seq}");
                let made = made.clone();
                async move {
                    c.create_slice(spec(&name, slivers)).await?;
                    made.lock().unwrap().push(Made {
                        name,
                        owner,
                        slivers,
                    });
                    Ok(true)
                }
            },
        )
        .await;
        let used = cpu.stop();
        let want = upserts + out.ok * slivers as u64;
        let counters = fleet.counters.clone();
        let delivered = until(Duration::from_secs(60), Duration::from_millis(20), || {
            let done = counters.upserts.load(Relaxed) >= want;
            async move { done }
        })
        .await;
        let rate = out.rate();
        println!(
            "create {slivers:>2}-sliver slices, {clients:>2} clients: {} in {:.1} s: {rate:.1} \
             slices/s, {:.0} slivers/s, {}; service CPU {:.1} ms per create; every upsert at \
             its node {} after the run{}",
            out.ok,
            out.elapsed.as_secs_f64(),
            rate * slivers as f64,
            out.percentiles(),
            used.ms_per(out.ok),
            secs(delivered),
            out.error_note()
        );
        let what = format!("{slivers}-sliver, {clients} clients");
        self.row(
            "create",
            &what,
            format!(
                "{rate:.1} slices/s, {:.0} slivers/s, {}, {:.1} ms CPU per create",
                rate * slivers as f64,
                out.percentiles(),
                used.ms_per(out.ok)
            ),
        );
    }

    /// Phase 4.
    async fn create(&mut self, fleet: &Fleet) {
        for (slivers, clients) in [(1, 16), (1, 64), (10, 16), (10, 64)] {
            self.create_run(fleet, slivers, clients).await;
        }
        println!(
            "create: {} live slices, {} slivers running on the nodes",
            self.made.lock().unwrap().len(),
            fleet.running()
        );
    }

    /// Creates `count` 1-sliver slices for `owner`, one after the other (untimed setup).
    async fn seed(&self, owner: usize, count: usize, prefix: &str) {
        let mut c =
            SliceServiceClient::with_interceptor(self.pool[0].clone(), self.bearers[owner].clone());
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            c.create_slice(spec(&name, 1)).await.expect("seed slice");
            self.made.lock().unwrap().push(Made {
                name,
                owner,
                slivers: 1,
            });
        }
    }

    /// One read load of 64 in flight.
    async fn read_run<F, Fut>(&mut self, what: &str, op: F)
    where
        F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<bool, tonic::Status>> + Send + 'static,
    {
        let cpu = CpuSpan::start(self.pid());
        let out = closed_loop(CLIENTS, self.args.phase, None, op).await;
        let used = cpu.stop();
        println!(
            "reads {what}: {:.0} ops/s, {}, 64 in flight; service CPU {:.2} ms per call{}",
            out.rate(),
            out.percentiles(),
            used.ms_per(out.ok),
            out.error_note()
        );
        self.row(
            "reads",
            what,
            format!("{:.0} /s, {}", out.rate(), out.percentiles()),
        );
    }

    /// Phase 5.
    async fn reads(&mut self) {
        if self.made.lock().unwrap().is_empty() {
            for owner in 0..CREATORS {
                self.seed(owner, 10, &format!("seed{owner}")).await;
            }
        }
        self.seed(CREATORS, LISTER_SLICES, "listed").await;
        let live = self.made.lock().unwrap().len();
        let mut by_owner: Vec<Vec<String>> = vec![Vec::new(); CREATORS];
        for m in self
            .made
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.owner < CREATORS)
        {
            by_owner[m.owner].push(m.name.clone());
        }
        let by_owner = Arc::new(by_owner);
        let (pool, bearers) = (self.pool.clone(), self.bearers.clone());

        let client = move |w: usize, owner: usize| {
            SliceServiceClient::with_interceptor(
                pool[w % pool.len()].clone(),
                bearers[owner].clone(),
            )
        };
        let c = client.clone();
        self.read_run("GetSlice", move |w, seq| {
            let names = &by_owner[w % CREATORS];
            let name = names[(seq as usize * 7919 + w * 104_729) % names.len()].clone();
            let mut c = c(w, w % CREATORS);
            async move {
                c.get_slice(pb::GetSliceRequest { name }).await?;
                Ok(true)
            }
        })
        .await;
        let c = client.clone();
        let seen = list_all(&mut c(0, CREATORS)).await.unwrap_or(0);
        println!("reads: the lister sees {seen} of {live} live slices");
        self.read_run("ListSlices", move |w, _| {
            let mut c = c(w, CREATORS);
            async move {
                list_all(&mut c).await?;
                Ok(true)
            }
        })
        .await;
        self.read_run("WhoAmI", move |w, _| {
            let mut c = client(w, w % CREATORS);
            async move {
                c.who_am_i(pb::WhoAmIRequest {}).await?;
                Ok(true)
            }
        })
        .await;
    }

    /// Deletes slices from `queue` with `clients` clients.
    async fn delete_run(&mut self, queue: Vec<Made>, clients: usize) -> u64 {
        let slivers: u64 = queue.iter().map(|m| m.slivers as u64).sum();
        let count = queue.len();
        let queue = Arc::new(Mutex::new(queue));
        let (pool, bearers) = (self.pool.clone(), self.bearers.clone());
        let cpu = CpuSpan::start(self.pid());
        let out = closed_loop(
            clients,
            Duration::from_secs(24 * 3600),
            None,
            move |w, _| {
                let next = queue.lock().unwrap().pop();
                let ch = pool[w % pool.len()].clone();
                let bearers = bearers.clone();
                async move {
                    let Some(m) = next else { return Ok(false) };
                    SliceServiceClient::with_interceptor(ch, bearers[m.owner].clone())
                        .delete_slice(pb::DeleteSliceRequest { name: m.name })
                        .await?;
                    Ok(true)
                }
            },
        )
        .await;
        let used = cpu.stop();
        println!(
            "delete, {clients:>2} clients: {} of {count} slices in {:.1} s: {:.1} slices/s, {}; \
             service CPU {:.1} ms per delete{}",
            out.ok,
            out.elapsed.as_secs_f64(),
            out.rate(),
            out.percentiles(),
            used.ms_per(out.ok),
            out.error_note()
        );
        self.row(
            "delete",
            &format!("{clients} clients"),
            format!(
                "{:.1} slices/s, {}, {:.1} ms CPU per delete",
                out.rate(),
                out.percentiles(),
                used.ms_per(out.ok)
            ),
        );
        slivers
    }

    /// Phase 6.
    async fn delete(&mut self, fleet: &Fleet) {
        let mut all = std::mem::take(&mut *self.made.lock().unwrap());
        if all.is_empty() {
            self.seed(0, 20, "doomed").await;
            all = std::mem::take(&mut *self.made.lock().unwrap());
        }
        let removes = fleet.counters.removes.load(Relaxed);
        let second = all.split_off(all.len() / 2);
        let t = Instant::now();
        let slivers = self.delete_run(all, 16).await + self.delete_run(second, 64).await;
        let counters = fleet.counters.clone();
        let removed = until(Duration::from_secs(120), Duration::from_millis(20), || {
            let done = counters.removes.load(Relaxed) >= removes + slivers;
            async move { done }
        })
        .await
        .map(|_| t.elapsed());
        let admin = self.admin.clone();
        let freed = until(Duration::from_secs(120), Duration::from_millis(250), || {
            let admin = admin.clone();
            async move { matches!(census(&admin).await, Ok((_, _, 0))) }
        })
        .await
        .map(|_| t.elapsed());
        println!(
            "delete: every remove ({slivers} slivers) at its node {}, all capacity free {} after \
             the first delete; {} slivers left on the nodes",
            secs(removed),
            secs(freed),
            fleet.running()
        );
        self.row("delete", "all capacity free", secs(freed));
    }

    /// Phase 7: SIGKILL and start again in place; until every node is ready again.
    async fn restart(&mut self, fleet: &Fleet) {
        let n = fleet.nodes.len();
        let failed = fleet.counters.failed_sessions.load(Relaxed);
        let generation = fleet.counters.generation.load(Relaxed) + 1;
        let t = Instant::now();
        self.svc.kill();
        fleet.counters.generation.store(generation, Relaxed);
        self.svc.restart_in_place().await;
        let listening = t.elapsed();
        let limit = Duration::from_secs(120 + n as u64 / 20);
        let welcomed = until(limit, Duration::from_millis(50), || {
            let w = fleet.welcomed_since(generation);
            async move { w == n }
        })
        .await
        .map(|_| t.elapsed());
        let admin = self.admin.clone();
        let ready = until(limit, Duration::from_millis(250), || {
            let admin = admin.clone();
            async move { matches!(census(&admin).await, Ok((r, _, _)) if r == n) }
        })
        .await
        .map(|_| t.elapsed());
        println!(
            "restart: SIGKILL, listening again after {:.2} s; {n} nodes welcomed {}, all ready per \
             ListNodes {} after the kill; {} failed attempts meanwhile; service RSS {:.0} MiB",
            listening.as_secs_f64(),
            secs(welcomed),
            secs(ready),
            fleet.counters.failed_sessions.load(Relaxed) - failed,
            proc::rss_mib(self.pid()).unwrap_or(0.0)
        );
        self.row("restart", "all ready after SIGKILL", secs(ready));
    }
}

/// Every page of the caller's ListSlices; how many slices it saw.
async fn list_all(
    c: &mut SliceServiceClient<InterceptedService<Channel, Bearer>>,
) -> Result<usize, tonic::Status> {
    let mut seen = 0;
    let mut page_token = String::new();
    loop {
        let page = c
            .list_slices(pb::ListSlicesRequest {
                include_deleted: false,
                site: String::new(),
                page_token,
            })
            .await?
            .into_inner();
        seen += page.slices.len();
        if page.next_page_token.is_empty() {
            return Ok(seen);
        }
        page_token = page.next_page_token;
    }
}
