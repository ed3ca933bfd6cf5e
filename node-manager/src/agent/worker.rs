//! The reconcile task of one control connection. Triggers: desired-state commands from the
//! service, engine events for this node's containers, and a periodic resync that catches
//! anything an event stream missed. Bursts are coalesced into one pass.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};

use crate::domain::{SliverReport, SliverSpec};
use crate::reconciler::{Reconciler, Usage};
use crate::runtime::Runtime;

/// Pause after a trigger to absorb the events that come with it (a create starts, ...).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Wait before re-subscribing to engine events after the stream broke.
const RESUBSCRIBE: Duration = Duration::from_secs(5);

/// What the service asked for.
#[derive(Debug, Clone)]
pub enum Command {
    /// The full desired set; anything else goes.
    Desired(Vec<SliverSpec>),
    /// Run this sliver (new or changed).
    Upsert(SliverSpec),
    /// Remove this sliver.
    Remove(String),
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
                d.insert(spec.sliver_id.clone(), spec);
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

/// Runs until `commands` closes (the connection ended) or `reports` is dropped.
pub async fn run<R: Runtime>(
    mut rec: Reconciler<R>,
    mut commands: mpsc::Receiver<Command>,
    reports: mpsc::Sender<SliverReport>,
    usage: watch::Sender<Usage>,
    resync: Duration,
) {
    let mut desired: Option<BTreeMap<String, SliverSpec>> = None;
    let mut changes = rec.runtime().changes();
    let mut resubscribe_at: Option<Instant> = None;
    let mut tick = interval(resync);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
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
            _ = tick.tick() => {}
        }
        sleep(DEBOUNCE).await;
        while let Ok(c) = commands.try_recv() {
            apply(&mut desired, &mut rec, c);
        }
        while resubscribe_at.is_none() {
            match changes.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                Some(Some(Err(_)) | None) => resubscribe_at = Some(Instant::now() + RESUBSCRIBE),
                None => break,
            }
        }
        match rec.pass(desired.as_ref()).await {
            Ok(rs) => {
                for r in rs {
                    if reports.send(r).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot observe containers; will retry"),
        }
        usage.send_replace(rec.usage());
    }
}
