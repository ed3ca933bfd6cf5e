//! Measured usage: what nodes report in heartbeats is checked (a node speaks only for its own
//! slivers), kept in the usage book (`crate::usage::book`) and written as 5-minute buckets in
//! batches by the sweep; reads combine the book with the written history, under the same
//! visibility rules as slices (a slice's usage is shown to whoever may see the slice):
//! `usage_read.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::error::Result;
use crate::model::{Millis, NewEvent};
use crate::store;
use crate::usage::book::Book;
use crate::usage::{Usage, RETENTION};

use super::Core;

/// Most measurements read from one heartbeat; the rest are ignored (a node runs far fewer).
pub const MAX_SAMPLES: usize = 4096;
/// Most slivers looked up in the database per heartbeat: a node that keeps naming slivers
/// nobody placed costs one bounded query per heartbeat, and its figures for the rest wait.
pub const MAX_LOOKUPS: usize = 256;
/// Longest sliver id believed (service ids are far shorter); longer ones are ignored.
const MAX_ID: usize = 128;
/// How often closed buckets are written.
const FLUSH_EVERY: Duration = Duration::from_secs(15);
/// How often the book forgets and the database drops old and ended history.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// The core's usage state (soft, but for the buckets already written).
#[derive(Debug, Default)]
pub struct UsageState {
    book: Mutex<Book>,
    /// Slice ids with written buckets (None until read from the database).
    written: Mutex<Option<HashSet<String>>>,
    /// When buckets were last written, and history last pruned.
    flushed: Mutex<Option<Millis>>,
    pruned: Mutex<Option<Millis>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn due(last: &Mutex<Option<Millis>>, now: Millis, every: Duration) -> bool {
    let mut l = lock(last);
    if l.is_some_and(|t| now - t < every.as_millis() as i64) {
        return false;
    }
    *l = Some(now);
    true
}

impl Core {
    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.usage.book)
    }

    /// The measurements of one heartbeat from `node`, taken now by the service's clock. Only
    /// those of slivers placed on `node` are kept; another node's sliver is refused, logged and
    /// written as an event once. Reads the database only for slivers not seen before.
    pub async fn record_usage(&self, node: &str, mut samples: Vec<(String, Usage)>) -> Result<()> {
        samples.truncate(MAX_SAMPLES);
        samples.retain(|(id, _)| id.len() <= MAX_ID);
        let now = self.now_ms();
        let mut unknown = self
            .book()
            .unknown(samples.iter().map(|(id, _)| id.as_str()));
        unknown.truncate(MAX_LOOKUPS);
        if !unknown.is_empty() {
            let found: HashMap<String, _> =
                store::sliver_owners(&mut *self.db.conn().await?, &unknown)
                    .await?
                    .into_iter()
                    .collect();
            let mut book = self.book();
            for id in &unknown {
                book.learn(id, found.get(id).cloned(), now);
            }
        }
        let recorded = self.book().record(node, now, &samples);
        if recorded.refused.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for (sliver, owner) in &recorded.refused {
            tracing::warn!(node, %sliver, %owner, "node reported usage of a sliver of another node; ignored");
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    &format!("node/{node}"),
                    format!("sliver/{sliver}"),
                    "usage refused",
                    format!("sliver belongs to node {owner}"),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes closed buckets in one transaction (every 15 s at most), and every 5 minutes
    /// forgets what is quiet or ended and deletes history older than 2 days or of ended slices.
    pub async fn usage_sweep(&self) -> Result<()> {
        let now = self.now_ms();
        if due(&self.usage.flushed, now, FLUSH_EVERY) {
            self.flush_usage(now).await?;
        }
        if due(&self.usage.pruned, now, PRUNE_EVERY) {
            self.prune_usage(now).await?;
        }
        Ok(())
    }

    /// Writes every closed bucket now; returns how many.
    pub async fn flush_usage(&self, now: Millis) -> Result<usize> {
        let closed = self.book().take_closed(now);
        if closed.is_empty() {
            return Ok(0);
        }
        let write = async {
            let mut tx = self.db.begin().await?;
            store::write_usage_buckets(&mut tx, &closed).await?;
            tx.commit().await?;
            Ok::<_, crate::error::Error>(())
        };
        if let Err(e) = write.await {
            self.book().put_back(closed);
            return Err(e);
        }
        if let Some(w) = lock(&self.usage.written).as_mut() {
            w.extend(
                closed
                    .iter()
                    .filter(|b| !b.slice_id.is_empty())
                    .map(|b| b.slice_id.clone()),
            );
        }
        Ok(closed.len())
    }

    /// Drops what is quiet or ended from the book, and old or ended history from the database.
    pub async fn prune_usage(&self, now: Millis) -> Result<()> {
        // Before the fleet index is loaded nothing counts as ended.
        let live = |id: &str| self.with_fleet(|f| f.slice_is_live(id)).unwrap_or(true);
        self.book().forget(now, live);
        let known = lock(&self.usage.written).clone();
        let written = match known {
            Some(w) => w,
            None => {
                let ids = store::usage_slice_ids(&mut *self.db.conn().await?).await?;
                ids.into_iter().collect()
            }
        };
        let ended: Vec<String> = written.iter().filter(|id| !live(id)).cloned().collect();
        let mut tx = self.db.begin().await?;
        let gone = store::prune_usage_of_slices(&mut tx, &ended).await?;
        let old = store::prune_usage_before(&mut tx, now - RETENTION.as_millis() as i64).await?;
        tx.commit().await?;
        if gone + old > 0 {
            tracing::debug!(
                ended_slices = ended.len(),
                rows = gone + old,
                "usage history pruned"
            );
        }
        let mut w = lock(&self.usage.written);
        let kept = w.get_or_insert(written);
        for id in &ended {
            kept.remove(id);
        }
        Ok(())
    }
}
