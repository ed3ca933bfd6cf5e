//! Command-line arguments (std only).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// The measured phases, in the order they run.
pub const PHASES: [&str; 7] = [
    "enroll", "connect", "liveness", "create", "reads", "delete", "restart",
];

const USAGE: &str = "usage: bench_fleet [--nodes N] [--sites S] [--phase-secs S] [--creates N] \
[--liveness-secs S] [--connect-concurrency C] [--postgres URL] [--service-bin PATH] \
[--only PHASE,...]
phases: enroll, connect, liveness, create, reads, delete, restart (enroll and connect always run:
the others need a connected fleet; reads and delete without create use a few untimed slices)";

#[derive(Debug, Clone)]
pub struct Args {
    pub nodes: usize,
    pub sites: usize,
    /// Length of each create, read and delete run.
    pub phase: Duration,
    /// Optional fixed number of slices per create run (the run still stops at `phase`).
    pub creates: Option<u64>,
    pub liveness: Duration,
    /// Nodes enrolling or opening their first control channel at once.
    pub connect_concurrency: usize,
    pub postgres: Option<String>,
    pub service_bin: Option<PathBuf>,
    pub only: BTreeSet<String>,
}

impl Args {
    pub fn parse() -> Result<Self, String> {
        let mut a = Args {
            nodes: 1000,
            sites: 10,
            phase: Duration::from_secs(10),
            creates: None,
            liveness: Duration::from_secs(30),
            connect_concurrency: 200,
            postgres: std::env::var("SLICEBED_TEST_POSTGRES")
                .ok()
                .filter(|s| !s.is_empty()),
            service_bin: std::env::var_os("SLICEBED_SERVICE_BIN").map(PathBuf::from),
            only: PHASES.iter().map(|s| s.to_string()).collect(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.into());
            }
            let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
            let num = |v: String| {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .ok_or(format!("{flag}: {v:?} is not a positive number"))
            };
            match flag.as_str() {
                "--nodes" => a.nodes = num(value()?)? as usize,
                "--sites" => a.sites = num(value()?)? as usize,
                "--phase-secs" => a.phase = Duration::from_secs_f64(num(value()?)?),
                "--creates" => a.creates = Some(num(value()?)? as u64),
                "--liveness-secs" => a.liveness = Duration::from_secs_f64(num(value()?)?),
                "--connect-concurrency" => a.connect_concurrency = num(value()?)? as usize,
                "--postgres" => a.postgres = Some(value()?),
                "--service-bin" => a.service_bin = Some(value()?.into()),
                "--only" => {
                    let v = value()?;
                    a.only = v.split(',').map(|s| s.trim().to_string()).collect();
                    if let Some(bad) = a.only.iter().find(|p| !PHASES.contains(&p.as_str())) {
                        return Err(format!("--only: unknown phase {bad:?}\n{USAGE}"));
                    }
                }
                _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
            }
        }
        a.sites = a.sites.clamp(1, a.nodes.max(1));
        Ok(a)
    }

    pub fn runs(&self, phase: &str) -> bool {
        self.only.contains(phase)
    }
}
