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
#[path = "bench_fleet/nodes.rs"]
mod nodes;
#[path = "bench_fleet/proc.rs"]
mod proc;
#[path = "bench_fleet/sim.rs"]
mod sim;
#[path = "bench_fleet/slices.rs"]
mod slices;
#[path = "bench_fleet/world.rs"]
mod world;

use std::sync::{Arc, Mutex};

use slicebed_proto::v1::admin_service_client::AdminServiceClient;
use slicebed_tests::client::Bearer;
use slicebed_tests::Service;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use args::Args;
use world::build_info;

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
