//! The phases about slices: create, reads, delete.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::slice_service_client::SliceServiceClient;
use slicebed_tests::client::Bearer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::load::closed_loop;
use crate::proc::CpuSpan;
use crate::sim::Fleet;
use crate::world::{census, secs, spec, until};
use crate::{Bench, Made, CLIENTS, CREATORS, LISTER_SLICES};

impl Bench {
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
    pub async fn create(&mut self, fleet: &Fleet) {
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
    pub async fn reads(&mut self) {
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
    pub async fn delete(&mut self, fleet: &Fleet) {
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
