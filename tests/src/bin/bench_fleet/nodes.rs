//! The phases about nodes: enroll, connect, liveness, restart.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use slicebed_proto::v1 as pb;

use crate::load::Outcome;
use crate::proc::{self, CpuSpan};
use crate::sim::{self, Fleet, SimNode, Target};
use crate::world::{census, secs, site_name, until};
use crate::Bench;

impl Bench {
    /// Phase 1: one-time tokens, then N enrollments, each on its own connection.
    pub async fn enroll(&mut self) -> Vec<Arc<SimNode>> {
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
                    cluster: false,
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
    pub async fn connect(&mut self, nodes: Vec<Arc<SimNode>>) -> Fleet {
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
             {} at once); {} broken or refused sessions; service CPU {:.1} ms per node, RSS {rss:.0} MiB",
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
    pub async fn liveness(&mut self, fleet: &Fleet) {
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

    /// Phase 7: SIGKILL and start again in place; until every node is ready again.
    pub async fn restart(&mut self, fleet: &Fleet) {
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
             ListNodes {} after the kill; {} broken or refused sessions meanwhile; service RSS {:.0} MiB",
            listening.as_secs_f64(),
            secs(welcomed),
            secs(ready),
            fleet.counters.failed_sessions.load(Relaxed) - failed,
            proc::rss_mib(self.pid()).unwrap_or(0.0)
        );
        self.row("restart", "all ready after SIGKILL", secs(ready));
    }
}
