//! Measured usage: what nodes report in heartbeats is checked (a node speaks only for its own
//! slivers), kept in the usage book (`crate::usage::book`) and written as 5-minute buckets in
//! batches by the sweep; reads combine the book with the written history, under the same
//! visibility rules as slices (a slice's usage is shown to whoever may see the slice).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use slicebed_units::Resources;

use crate::auth::Principal;
use crate::error::Result;
use crate::model::{Millis, NewEvent, Slice};
use crate::state::SliverState;
use crate::store::{self, SliceKey};
use crate::usage::book::Book;
use crate::usage::{
    bucket_start, history_window, SeriesKind, Usage, UsagePoint, RECENT, RETENTION,
};

use super::{Core, NodeView, SliceStatus, SliceView, SliverView};

/// Most measurements read from one heartbeat; the rest are ignored (a node runs far fewer).
pub const MAX_SAMPLES: usize = 4096;
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

/// What one sliver uses, with its view.
#[derive(Debug, Clone)]
pub struct SliverUsage {
    pub view: SliverView,
    /// The latest measurement and when it was taken; None when there is none recent.
    pub current: Option<(Millis, Usage)>,
    /// Oldest first; empty unless asked for.
    pub history: Vec<UsagePoint>,
}

/// What one slice uses: totals over its slivers that are not deleted.
#[derive(Debug, Clone)]
pub struct SliceUsage {
    pub slice: Slice,
    pub status: SliceStatus,
    pub total: Usage,
    pub limits: Resources,
    /// Slivers not deleted, and those with a current measurement.
    pub slivers: u32,
    pub reporting: u32,
    /// Its slivers that are not deleted, by index.
    pub sliver_usage: Vec<SliverUsage>,
}

/// What one node's slivers use together.
#[derive(Debug, Clone)]
pub struct NodeUsage {
    pub node: NodeView,
    /// The latest total, when it was measured, and how many slivers it counts.
    pub current: Option<(Millis, Usage, u32)>,
    /// Oldest first; empty unless asked for.
    pub history: Vec<UsagePoint>,
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
    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.usage.book)
    }

    /// The measurements of one heartbeat from `node`, taken now by the service's clock. Only
    /// those of slivers placed on `node` are kept; another node's sliver is refused, logged and
    /// written as an event once. Reads the database only for slivers not seen before.
    pub async fn record_usage(&self, node: &str, mut samples: Vec<(String, Usage)>) -> Result<()> {
        samples.truncate(MAX_SAMPLES);
        let now = self.now_ms();
        let unknown = self
            .book()
            .unknown(samples.iter().map(|(id, _)| id.as_str()));
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

    /// The history of these subjects over `window` (at most 2 days): every measurement up to
    /// 30 minutes, else 5-minute buckets (written ones, then those still in memory).
    pub async fn usage_history(
        &self,
        kind: SeriesKind,
        subjects: &[String],
        window: Duration,
    ) -> Result<HashMap<String, Vec<UsagePoint>>> {
        let window = window.min(RETENTION);
        let since = self.now_ms() - window.as_millis() as i64;
        if window <= RECENT {
            let book = self.book();
            return Ok(subjects
                .iter()
                .map(|s| (s.clone(), book.recent(kind, s, since)))
                .collect());
        }
        let mut out: HashMap<String, Vec<UsagePoint>> = HashMap::new();
        let rows = store::usage_buckets(
            &mut *self.db.conn().await?,
            kind,
            subjects,
            bucket_start(since),
        )
        .await?;
        for (s, p) in rows {
            out.entry(s).or_default().push(p);
        }
        let book = self.book();
        for s in subjects {
            let points = out.entry(s.clone()).or_default();
            for p in book.unwritten(kind, s) {
                points.retain(|q| q.at != p.at);
                points.push(p);
            }
            points.sort_by_key(|p| p.at);
        }
        Ok(out)
    }

    /// Measurements older than this are not current (three heartbeats: the node's TTL).
    fn current_since(&self) -> Millis {
        self.now_ms() - self.cfg.node_ttl.as_millis() as i64
    }

    /// A slice's usage from its view: slivers not deleted, with their current measurement
    /// unless their node is blind (then nothing is current).
    pub(crate) fn usage_of(&self, view: SliceView) -> SliceUsage {
        let status = view.status();
        let since = self.current_since();
        let book = self.book();
        let mut u = SliceUsage {
            slice: view.slice,
            status,
            total: Usage::default(),
            limits: Resources::default(),
            slivers: 0,
            reporting: 0,
            sliver_usage: Vec::new(),
        };
        for v in view.slivers {
            if v.sliver.state == SliverState::Deleted {
                continue;
            }
            let current = (!v.unknown)
                .then(|| book.sliver_now(&v.sliver.id, since))
                .flatten();
            u.slivers += 1;
            u.limits = u.limits.plus(v.sliver.resources);
            if let Some((_, c)) = current {
                u.reporting += 1;
                u.total = u.total.plus(c);
            }
            u.sliver_usage.push(SliverUsage {
                view: v,
                current,
                history: Vec::new(),
            });
        }
        u
    }

    /// One slice's usage, per sliver, with `history` of each if asked (at most 2 days). The
    /// caller must be allowed to see the slice (as GetSlice: NotFound otherwise).
    pub async fn slice_usage(
        &self,
        p: &Principal,
        name: &str,
        history: Option<Duration>,
    ) -> Result<SliceUsage> {
        let mut u = self.usage_of(self.get_slice(p, name).await?);
        if let Some(w) = history_window(history) {
            let ids: Vec<String> = u
                .sliver_usage
                .iter()
                .map(|s| s.view.sliver.id.clone())
                .collect();
            let mut h = self.usage_history(SeriesKind::Sliver, &ids, w).await?;
            for s in &mut u.sliver_usage {
                s.history = h.remove(&s.view.sliver.id).unwrap_or_default();
            }
        }
        Ok(u)
    }

    /// The usage of the caller's live slices (those ListSlices shows them), a page at a time
    /// from `from`; and where the next page starts.
    pub async fn slices_usage(
        &self,
        p: &Principal,
        from: Option<SliceKey>,
        limit: usize,
    ) -> Result<(Vec<SliceUsage>, Option<SliceKey>)> {
        let page = self.list_slices(p, false, "", from, limit).await?;
        let out = page.views.into_iter().map(|v| self.usage_of(v)).collect();
        Ok((out, page.next))
    }

    /// Every node's usage (or one node's), with `history` if asked. Any signed-in user may ask:
    /// node totals name no slice (like ListResources).
    pub async fn nodes_usage(
        &self,
        p: &Principal,
        only: Option<&str>,
        history: Option<Duration>,
    ) -> Result<Vec<NodeUsage>> {
        let mut nodes = self.list_nodes(p, None).await?;
        if let Some(name) = only.filter(|n| !n.is_empty()) {
            nodes.retain(|n| n.node.name == name);
            if nodes.is_empty() {
                return Err(crate::error::Error::not_found("node", name));
            }
        }
        nodes.sort_by(|a, b| (&a.node.site, &a.node.name).cmp(&(&b.node.site, &b.node.name)));
        let since = self.current_since();
        let mut out: Vec<NodeUsage> = {
            let book = self.book();
            nodes
                .into_iter()
                .map(|n| NodeUsage {
                    current: book.node_now(&n.node.name, since),
                    node: n,
                    history: Vec::new(),
                })
                .collect()
        };
        if let Some(w) = history_window(history) {
            let names: Vec<String> = out.iter().map(|n| n.node.node.name.clone()).collect();
            let mut h = self.usage_history(SeriesKind::Node, &names, w).await?;
            for n in &mut out {
                n.history = h.remove(&n.node.node.name).unwrap_or_default();
            }
        }
        Ok(out)
    }
}
