//! Per-sliver usage for heartbeats: one sampling pass of the runtime's counters per heartbeat
//! interval ([`Runtime::stats`]), turned into rates against the previous pass, with the disk
//! use the reconciler last measured (it measures every 30 s for disk limits; it is never
//! measured a second time here).
//!
//! The sampler runs in a task of its own and hands its latest figures over a watch channel, so
//! a slow engine never holds up a heartbeat; each pass is also cut off after [`budget`].
//! It knows no proto and no engine types: `convert` and the runtime translate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};

use crate::runtime::{ContainerStats, Runtime};

/// What one sliver used over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliverUsage {
    /// Thousandths of a core, averaged over the interval.
    pub cpu_millis: i64,
    /// Working set, bytes.
    pub memory_bytes: i64,
    /// Bytes written to its own file system at the last disk measurement (0 if none yet).
    pub disk_bytes: i64,
    /// Bytes received per second.
    pub net_rx_bps: i64,
    /// Bytes sent per second.
    pub net_tx_bps: i64,
}

/// The figures of the latest pass: when it ended, and (sliver id, usage) pairs.
pub type Samples = Option<(Instant, Vec<(String, SliverUsage)>)>;

/// Bytes each container wrote, by container id, as the reconciler last measured; shared with
/// the sampler.
#[derive(Debug, Clone, Default)]
pub struct DiskSizes(Arc<Mutex<HashMap<String, i64>>>);

impl DiskSizes {
    /// Replaces the figures with a new measurement.
    pub fn set(&self, sizes: HashMap<String, i64>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = sizes;
    }

    fn get(&self, container_id: &str) -> i64 {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(container_id).copied().unwrap_or(0)
    }
}

/// Each sliver's previous reading and when it was taken, kept for the agent's whole life (not
/// per connection), so a reconnect costs no figures and a first reading is a first sight.
#[derive(Debug, Clone, Default)]
pub struct Baselines(Arc<Mutex<HashMap<String, (ContainerStats, Instant)>>>);

/// Shortest run over which a first reading is turned into rates.
const MIN_RUN: Duration = Duration::from_millis(200);

/// `delta` per second over `elapsed`, or 0 when the counter went back (a new container).
fn per_second(delta: u64, elapsed: Duration) -> i64 {
    let nanos = elapsed.as_nanos().max(1);
    i64::try_from(u128::from(delta) * 1_000_000_000 / nanos).unwrap_or(i64::MAX)
}

/// The usage between two readings of the same container `elapsed` apart; `None` when they
/// are not comparable (another container, counters that went back, no time between them).
pub fn rates(
    prev: &ContainerStats,
    cur: &ContainerStats,
    elapsed: Duration,
) -> Option<SliverUsage> {
    if prev.container_id != cur.container_id
        || elapsed.is_zero()
        || cur.cpu_nanos < prev.cpu_nanos
        || cur.net_rx_bytes < prev.net_rx_bytes
        || cur.net_tx_bytes < prev.net_tx_bytes
    {
        return None;
    }
    // CPU nanoseconds per second are millicores times a million.
    Some(SliverUsage {
        cpu_millis: per_second(cur.cpu_nanos - prev.cpu_nanos, elapsed) / 1_000_000,
        memory_bytes: cur.memory_bytes.max(0),
        disk_bytes: 0,
        net_rx_bps: per_second(cur.net_rx_bytes - prev.net_rx_bytes, elapsed),
        net_tx_bps: per_second(cur.net_tx_bytes - prev.net_tx_bytes, elapsed),
    })
}

/// Time between two readings: between the engine's own read times when both have one (its
/// counters were read then, whenever it answered), else `asked`, the time between the passes.
pub fn between(prev: &ContainerStats, cur: &ContainerStats, asked: Duration) -> Duration {
    match (prev.read_at, cur.read_at) {
        (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
        _ => asked,
    }
}

/// Whether the engine gave the same reading of the same container twice.
fn same_reading(prev: &ContainerStats, cur: &ContainerStats) -> bool {
    prev.container_id == cur.container_id && prev.read_at.is_some() && prev.read_at == cur.read_at
}

/// A sliver's first reading as rates since its container started (its counters count from
/// then), when the runtime says when that was and it is not too recent. `now` is when the
/// counters were read.
pub fn since_start(cur: &ContainerStats, now: SystemTime) -> Option<SliverUsage> {
    let run = now.duration_since(cur.started_at?).ok()?;
    let zero = ContainerStats {
        cpu_nanos: 0,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        ..cur.clone()
    };
    (run >= MIN_RUN).then(|| rates(&zero, cur, run)).flatten()
}

/// Turns the runtime's counters into usage against the previous pass.
pub struct Sampler<R> {
    runtime: R,
    disk: DiskSizes,
    prev: Baselines,
}

impl<R: Runtime> Sampler<R> {
    /// A sampler continuing from `prev`.
    pub fn new(runtime: R, disk: DiskSizes, prev: Baselines) -> Self {
        Self {
            runtime,
            disk,
            prev,
        }
    }

    /// One pass: the usage of every running sliver, against its previous reading, or since its
    /// container started for one seen for the first time. A sliver whose counters cannot be
    /// compared (its container was replaced or restarted) only sets a new baseline.
    pub async fn pass(&mut self) -> crate::runtime::Result<Vec<(String, SliverUsage)>> {
        let now_stats = self.runtime.stats().await?;
        let (at, wall) = (Instant::now(), SystemTime::now());
        let mut out = Vec::with_capacity(now_stats.len());
        let mut next = HashMap::with_capacity(now_stats.len());
        let mut prev = self.prev.0.lock().unwrap_or_else(|p| p.into_inner());
        for s in now_stats {
            let usage = match prev.get(&s.sliver_id) {
                Some((p, then)) if same_reading(p, &s) => {
                    // The engine answered from the reading it gave last time: no new figure,
                    // and the older baseline stays, so the next interval is measured from it.
                    next.insert(s.sliver_id.clone(), (p.clone(), *then));
                    continue;
                }
                Some((p, then)) => rates(p, &s, between(p, &s, at.duration_since(*then))),
                None => since_start(&s, s.read_at.unwrap_or(wall)),
            };
            if let Some(mut u) = usage {
                u.disk_bytes = self.disk.get(&s.container_id);
                out.push((s.sliver_id.clone(), u));
            }
            next.insert(s.sliver_id.clone(), (s, at));
        }
        *prev = next;
        Ok(out)
    }
}

/// Longest a pass may take: half an interval, but never less than the engine needs (Docker
/// answers stats at its collector's next one-second tick).
pub fn budget(every: Duration) -> Duration {
    (every / 2).max(Duration::from_secs(3))
}

/// How long before each heartbeat a pass starts, so the heartbeat carries fresh figures: long
/// enough for Docker's one-second stats tick, at most half an interval.
pub fn lead(every: Duration) -> Duration {
    (every / 2).min(Duration::from_millis(1500))
}

/// Samples every `every`, each pass starting `lead(every)` before a heartbeat of a session whose
/// heartbeats started at `start`; publishes each pass in `out` (an empty pass when the engine
/// does not answer). Runs until aborted.
pub async fn run<R: Runtime>(
    runtime: R,
    disk: DiskSizes,
    prev: Baselines,
    start: Instant,
    every: Duration,
    out: watch::Sender<Samples>,
) {
    let mut sampler = Sampler::new(runtime, disk, prev);
    // A first pass at once: baselines for what is already known, figures for the rest.
    if let Ok(Ok(v)) = timeout(budget(every), sampler.pass()).await {
        out.send_replace(Some((Instant::now(), v)));
    }
    let mut tick = interval_at(start + every - lead(every), every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let figures = match timeout(budget(every), sampler.pass()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "usage sampling failed");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = budget(every).as_millis() as u64,
                    "usage sampling pass took too long; skipped"
                );
                continue;
            }
        };
        out.send_replace(Some((Instant::now(), figures)));
    }
}

#[cfg(test)]
mod tests;
