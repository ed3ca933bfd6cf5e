//! Reading measured usage: a slice's slivers (under GetSlice's visibility), the caller's slices
//! (under ListSlices'), every node (any signed-in user), each with its history if asked: the
//! book's recent points up to 30 minutes, else written buckets and those still in memory.

use std::collections::HashMap;
use std::time::Duration;

use slicebed_units::Resources;

use crate::auth::Principal;
use crate::error::Result;
use crate::model::{Millis, Slice};
use crate::state::SliverState;
use crate::store::{self, SliceKey};
use crate::usage::{
    bucket_start, history_window, SeriesKind, Usage, UsagePoint, RECENT, RETENTION,
};

use super::{Core, NodeView, SliceStatus, SliceView, SliverView};

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
impl Core {
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
