//! The reconcile task of one control connection. Triggers: desired-state commands from the
//! service, engine events for this node's containers, and a periodic resync that catches
//! anything an event stream missed, the earliest lease end (so a lease ends on time, not at
//! the next resync) and changes of the owner's reclaim. Bursts are coalesced into one pass.
//!
//! The same loop runs without a connection ([`offline`]) on the last desired set the service
//! sent, so that leases end and reclaim pauses slivers even while the node is cut off.
//!
//! A pass that cannot list the containers means the engine is away (stopped, restarting):
//! the worker records it in [`EngineWatch`] for the session to report, tries again every
//! [`ENGINE_RETRY`], and on its return re-subscribes to its events at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};

use crate::clock::{SharedClock, SystemClock};
use crate::desired_store::DesiredStore;
use crate::domain::{SliverReport, SliverSpec};
use crate::engine_health::EngineWatch;
use crate::plan::{next_lease_end, Conditions};
use crate::reconciler::{Reconciler, Usage};
use crate::runtime::Runtime;

/// Pause after a trigger to absorb the events that come with it (a create starts, ...).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Wait before re-subscribing to engine events after the stream broke.
const RESUBSCRIBE: Duration = Duration::from_secs(5);
/// How often a pass is tried while the engine does not answer.
pub const ENGINE_RETRY: Duration = Duration::from_secs(1);

/// What the service asked for.
#[derive(Debug, Clone)]
pub enum Command {
    /// The full desired set; anything else goes.
    Desired(Vec<SliverSpec>),
    /// Run this sliver (new or changed).
    Upsert(Box<SliverSpec>),
    /// Remove this sliver.
    Remove(String),
}

/// The desired set as last received, kept across connections for [`offline`].
pub type Desired = BTreeMap<String, SliverSpec>;

/// What every worker of one agent shares, whichever connection it serves.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Wall clock for lease ends.
    pub clock: SharedClock,
    /// `Some(message)` while the owner has reclaimed the node.
    pub hold: watch::Receiver<Option<String>>,
    /// The last desired set any worker knew.
    pub last_desired: Arc<Mutex<Option<Desired>>>,
    /// Period of the full resync.
    pub resync: Duration,
    /// Whether the container engine answers.
    pub engine: EngineWatch,
    /// Where the last desired set is kept across restarts, if anywhere.
    pub store: Option<DesiredStore>,
    /// Where reconcile passes are counted, if anywhere.
    pub metrics: Option<crate::metrics::NodeMetrics>,
    /// What each container wrote at the reconciler's last disk measure (for usage reports).
    pub disk: crate::usage::DiskSizes,
    /// Each sliver's last usage reading, across connections.
    pub baselines: crate::usage::Baselines,
    /// Fetches pinned images from the store, if this node manager can.
    pub images: Option<crate::fetch::Images>,
}

impl Shared {
    /// The system clock, never held, no desired set yet.
    pub fn new(resync: Duration) -> Self {
        Self::with(resync, Arc::new(SystemClock), watch::channel(None).1)
    }

    /// With a given clock and reclaim decision.
    pub fn with(
        resync: Duration,
        clock: SharedClock,
        hold: watch::Receiver<Option<String>>,
    ) -> Self {
        Self {
            clock,
            hold,
            last_desired: Arc::default(),
            resync,
            engine: EngineWatch::default(),
            store: None,
            metrics: None,
            disk: Default::default(),
            baselines: Default::default(),
            images: None,
        }
    }

    /// Keeps the last desired set in `store`, starting from what it holds.
    pub fn kept_in(mut self, store: DesiredStore) -> Self {
        if let Some(kept) = store.load() {
            tracing::info!(
                slivers = kept.len(),
                "last desired set loaded; used until the service sends one"
            );
            *self.last_desired.lock().unwrap_or_else(|p| p.into_inner()) = Some(kept);
        }
        self.store = Some(store);
        self
    }

    fn remember(&self, desired: &Option<Desired>) {
        let Some(d) = desired else { return };
        {
            let mut last = self.last_desired.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() == Some(d) {
                return;
            }
            *last = Some(d.clone());
        }
        if let Some(m) = &self.store {
            if let Err(e) = m.save(d) {
                tracing::warn!(error = %e, "cannot keep the desired set on disk; it is kept in memory only");
            }
        }
    }

    fn last(&self) -> Option<Desired> {
        self.last_desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn apply<R: Runtime>(
    desired: &mut Option<BTreeMap<String, SliverSpec>>,
    rec: &mut Reconciler<R>,
    c: Command,
) {
    match c {
        Command::Desired(specs) => {
            tracing::info!(slivers = specs.len(), "received desired set");
            *desired = Some(
                specs
                    .into_iter()
                    .map(|s| (s.sliver_id.clone(), s))
                    .collect(),
            );
        }
        Command::Upsert(spec) => match desired {
            Some(d) => {
                tracing::info!(sliver = %spec.sliver_id, generation = spec.generation, "upsert");
                rec.forgive(&spec.sliver_id);
                d.insert(spec.sliver_id.clone(), *spec);
            }
            // The set that follows will hold it; acting on a partial set could remove slivers.
            None => {
                tracing::warn!(sliver = %spec.sliver_id, "upsert before the desired set; ignored")
            }
        },
        Command::Remove(id) => {
            tracing::info!(sliver = %id, "remove");
            if let Some(d) = desired {
                d.remove(&id);
            }
        }
    }
}

/// Runs until `commands` closes (the connection ended) or `reports` is dropped. Starts with
/// no desired set: until the service sends one it only observes.
pub async fn run<R: Runtime>(
    rec: Reconciler<R>,
    commands: mpsc::Receiver<Command>,
    reports: mpsc::Sender<SliverReport>,
    usage: watch::Sender<Usage>,
    shared: Shared,
) {
    run_from(None, rec, commands, reports, usage, shared).await
}

/// Reconciles the last known desired set while the node has no connection: leases still
/// end and reclaim still pauses. Reports are dropped (the next `Hello` carries the truth).
/// Runs until cancelled; returns at once if no desired set was ever received.
pub async fn offline<R: Runtime>(runtime: R, shared: Shared) {
    let Some(desired) = shared.last() else {
        return std::future::pending().await;
    };
    let (_keep_open, commands) = mpsc::channel(1);
    let (reports, mut drain) = mpsc::channel(64);
    let (usage, _) = watch::channel(Usage::default());
    let rec = Reconciler::new(runtime).with_images(shared.images.clone());
    tokio::join!(
        run_from(Some(desired), rec, commands, reports, usage, shared),
        async { while drain.recv().await.is_some() {} },
    );
}

async fn run_from<R: Runtime>(
    mut desired: Option<Desired>,
    mut rec: Reconciler<R>,
    mut commands: mpsc::Receiver<Command>,
    reports: mpsc::Sender<SliverReport>,
    usage: watch::Sender<Usage>,
    shared: Shared,
) {
    let mut changes = rec.runtime().changes();
    let mut resubscribe_at: Option<Instant> = None;
    let mut tick = interval(shared.resync);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut hold = shared.hold.clone();
    let mut hold_open = true;
    let images = shared.images.clone();
    loop {
        // When the next lease ends, on tokio's clock (the wall clock only says how far off).
        let now = shared.clock.now();
        let lease_end = desired
            .as_ref()
            .and_then(|d| next_lease_end(d, now))
            .map(|end| Instant::now() + end.duration_since(now).unwrap_or_default());
        tokio::select! {
            _ = sleep_until(lease_end.unwrap_or_else(Instant::now)), if lease_end.is_some() => {
                tracing::debug!("a lease ends");
            }
            r = hold.changed(), if hold_open => hold_open = r.is_ok(),
            c = commands.recv() => match c {
                Some(c) => apply(&mut desired, &mut rec, c),
                None => return,
            },
            ev = changes.next(), if resubscribe_at.is_none() => match ev {
                Some(Ok(ch)) => tracing::debug!(sliver = ?ch.sliver_id, action = %ch.action, "engine event"),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "engine event stream failed; relying on resync");
                    resubscribe_at = Some(Instant::now() + RESUBSCRIBE);
                }
                None => resubscribe_at = Some(Instant::now() + RESUBSCRIBE),
            },
            _ = sleep_until(resubscribe_at.unwrap_or_else(Instant::now)), if resubscribe_at.is_some() => {
                changes = rec.runtime().changes();
                resubscribe_at = None;
            }
            _ = sleep(ENGINE_RETRY), if shared.engine.is_down() => {}
            // An image fetch made progress or ended: report it, or create its slivers.
            _ = async { images.as_ref().expect("checked").changed().await }, if images.is_some() => {}
            _ = tick.tick() => {}
        }
        sleep(DEBOUNCE).await;
        while let Ok(c) = commands.try_recv() {
            apply(&mut desired, &mut rec, c);
        }
        shared.remember(&desired);
        while resubscribe_at.is_none() {
            match changes.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                Some(Some(Err(_)) | None) => resubscribe_at = Some(Instant::now() + RESUBSCRIBE),
                None => break,
            }
        }
        let cond = Conditions {
            now: shared.clock.now(),
            hold: hold.borrow_and_update().clone(),
        };
        let started = std::time::Instant::now();
        let pass = rec.pass_at(desired.as_ref(), &cond).await;
        if let Some(m) = &shared.metrics {
            m.reconcile_pass(started.elapsed(), pass.is_ok());
        }
        match pass {
            Ok(rs) => {
                if let Some(away) = shared.engine.back(shared.clock.now()) {
                    tracing::info!(
                        away_ms = away.as_millis() as u64,
                        "container engine answers again"
                    );
                    changes = rec.runtime().changes();
                    resubscribe_at = None;
                }
                for r in rs {
                    if reports.send(r).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if shared.engine.lost(e.to_string(), shared.clock.now()) {
                    tracing::error!(error = %e, "container engine unavailable; retrying every second");
                } else {
                    tracing::debug!(error = %e, "container engine still unavailable");
                }
            }
        }
        usage.send_replace(rec.usage());
        shared.disk.set(rec.disk_written().clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::clock::TokioClock;
    use crate::domain::ReportedState;
    use crate::runtime::fake::{Behaviour, FakeRuntime};

    const IMAGE: &str = "slicebed/base:latest";

    fn leased(id: &str, end: std::time::SystemTime) -> SliverSpec {
        SliverSpec {
            sliver_id: id.into(),
            slice: "web".into(),
            index: 0,
            image: IMAGE.into(),
            command: vec![],
            env: Default::default(),
            resources: Default::default(),
            ports: vec![],
            restart: crate::domain::RestartPolicy::Never,
            generation: 1,
            lease_expires_at: Some(end),
            image_digest: String::new(),
            pull: None,
        }
    }

    struct Harness {
        rt: FakeRuntime,
        commands: mpsc::Sender<Command>,
        reports: mpsc::Receiver<SliverReport>,
        hold: watch::Sender<Option<String>>,
        engine: EngineWatch,
        t0: Instant,
    }

    impl Harness {
        /// A worker with a one-hour resync, so every timely pass is due to a lease or reclaim.
        fn start(wall: std::time::SystemTime) -> Self {
            let rt = FakeRuntime::new("n1").with_image(IMAGE, Behaviour::Run);
            let (hold, hold_rx) = watch::channel(None);
            let shared = Shared::with(
                Duration::from_secs(3600),
                Arc::new(TokioClock::starting_at(wall)),
                hold_rx,
            );
            let (commands, cmd_rx) = mpsc::channel(16);
            let (rep_tx, reports) = mpsc::channel(64);
            let (usage, _) = watch::channel(Usage::default());
            let engine = shared.engine.clone();
            tokio::spawn(run(
                Reconciler::new(rt.clone()),
                cmd_rx,
                rep_tx,
                usage,
                shared,
            ));
            Self {
                rt,
                commands,
                reports,
                hold,
                engine,
                t0: Instant::now(),
            }
        }

        /// The next report and when it came (seconds since start, on the paused clock).
        async fn next(&mut self) -> (String, ReportedState, String, f64) {
            let r = self.reports.recv().await.expect("worker stopped");
            let at = self.t0.elapsed().as_secs_f64();
            (r.sliver_id, r.state, r.message, at)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leases_end_on_time_without_the_service_and_a_renewal_wins() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = Harness::start(wall);
        let secs = |s| wall + Duration::from_secs(s);
        h.commands
            .send(Command::Desired(vec![
                leased("a", secs(30)),
                leased("b", secs(60)),
            ]))
            .await
            .unwrap();
        let mut running = 0;
        while running < 2 {
            if h.next().await.1 == ReportedState::Running {
                running += 1;
            }
        }
        // The service renews "a" at t=20, before its end at 30: it keeps running.
        sleep_until(h.t0 + Duration::from_secs(20)).await;
        h.commands
            .send(Command::Upsert(Box::new(leased("a", secs(90)))))
            .await
            .unwrap();
        let (id, state, message, at) = h.next().await;
        assert_eq!(
            (id.as_str(), state, message.as_str()),
            ("b", ReportedState::Deleted, "lease ended")
        );
        assert!(
            (60.0..61.0).contains(&at),
            "b ended at {at}s, not at its lease end"
        );
        let (id, state, message, at) = h.next().await;
        assert_eq!(
            (id.as_str(), state, message.as_str()),
            ("a", ReportedState::Deleted, "lease ended")
        );
        assert!(
            (90.0..91.0).contains(&at),
            "a ended at {at}s, not at its renewed end"
        );
        assert!(h.rt.containers().is_empty());
        // The renewal did not replace "a".
        let creates =
            h.rt.calls()
                .iter()
                .filter(|c| c.starts_with("create"))
                .count();
        assert_eq!(creates, 2, "{:?}", h.rt.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn reclaim_pauses_within_a_pass_and_release_resumes() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = Harness::start(wall);
        let far = wall + Duration::from_secs(86_400);
        h.commands
            .send(Command::Desired(vec![leased("a", far)]))
            .await
            .unwrap();
        while h.next().await.1 != ReportedState::Running {}
        h.hold.send_replace(Some("host load 4.1 above 3.5".into()));
        let (id, state, message, at) = h.next().await;
        assert_eq!(
            (id.as_str(), state, message.as_str()),
            ("a", ReportedState::Suspended, "host load 4.1 above 3.5")
        );
        assert!(at < 1.0, "paused after {at}s");
        // A sliver that arrives while held is created and frozen at once.
        h.commands
            .send(Command::Upsert(Box::new(leased("b", far))))
            .await
            .unwrap();
        assert_eq!(h.next().await.1, ReportedState::Creating);
        assert_eq!(h.next().await.1, ReportedState::Suspended);
        h.hold.send_replace(None);
        assert_eq!(h.next().await.1, ReportedState::Running);
        assert_eq!(h.next().await.1, ReportedState::Running);
        let calls = h.rt.calls();
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("unpause")).count(),
            2,
            "{calls:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_outage_is_seen_and_its_end_noticed_within_a_second() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = Harness::start(wall);
        let far = wall + Duration::from_secs(86_400);
        let mut seen = h.engine.subscribe();
        h.commands
            .send(Command::Desired(vec![leased("a", far)]))
            .await
            .unwrap();
        while h.next().await.1 != ReportedState::Running {}
        assert!(!h.engine.is_down());

        h.rt.set_down(true);
        h.commands
            .send(Command::Upsert(Box::new(leased("b", far))))
            .await
            .unwrap();
        seen.changed().await.unwrap();
        let down = seen.borrow_and_update().clone().expect("engine seen down");
        assert!(down.message.contains("connection refused"), "{down:?}");

        // Back at t0+10s: the worker retries every second, not at the next (hourly) resync.
        sleep_until(h.t0 + Duration::from_secs(10)).await;
        h.rt.set_down(false);
        seen.changed().await.unwrap();
        assert!(seen.borrow_and_update().is_none());
        assert!(
            h.t0.elapsed() < Duration::from_secs(12),
            "{:?}",
            h.t0.elapsed()
        );
        let (id, state, _, _) = h.next().await;
        assert_eq!((id.as_str(), state), ("b", ReportedState::Creating));
        assert_eq!(h.next().await.1, ReportedState::Running);
    }
}
