//! The usage book: for every sliver and node heard of lately, its latest measurement, every
//! measurement of the last [`RECENT`], the 5-minute bucket being filled, and the closed buckets
//! waiting to be written (in batches, by the core: never a row per heartbeat).
//!
//! It also remembers which node each sliver is placed on (learned from the database once per
//! sliver), so that a node's report about another node's sliver is refused without a read per
//! heartbeat. Everything here is soft state: a restart loses the open buckets and the recent
//! points, never a written bucket.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{bucket_start, Bucket, SeriesKind, Usage, UsagePoint, BUCKET, RECENT};
use crate::model::Millis;

/// Most closed buckets kept while the database does not take them; the oldest go first.
pub const MAX_PENDING: usize = 500_000;
/// Most recent points kept per sliver or node: 30 minutes at the default 10 s heartbeat
/// (about 9 KB each; a shorter heartbeat keeps a shorter stretch, not more memory).
pub const MAX_RECENT_POINTS: usize = 180;

/// Where a sliver is placed, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub slice_id: String,
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    start: Millis,
    n: i64,
    sum: Usage,
    peak: Usage,
}

impl Acc {
    fn point(&self) -> UsagePoint {
        UsagePoint {
            at: self.start,
            span_ms: BUCKET.as_millis() as i64,
            mean: self.sum.mean_of(self.n),
            peak: self.peak,
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    recent: VecDeque<(Millis, Usage)>,
    open: Option<Acc>,
}

impl Series {
    /// Adds a measurement; returns the bucket it closed, if any.
    fn add(&mut self, at: Millis, u: Usage) -> Option<Acc> {
        let start = bucket_start(at);
        let closed = match self.open {
            Some(a) if a.start == start => None,
            other => {
                self.open = None;
                other
            }
        };
        let a = self.open.get_or_insert(Acc {
            start,
            n: 0,
            sum: Usage::default(),
            peak: u,
        });
        a.n += 1;
        a.sum = a.sum.plus(u);
        a.peak = a.peak.max(u);
        self.recent.push_back((at, u));
        let horizon = at - RECENT.as_millis() as i64;
        while self.recent.len() > MAX_RECENT_POINTS
            || self.recent.front().is_some_and(|(t, _)| *t < horizon)
        {
            self.recent.pop_front();
        }
        closed
    }

    fn last(&self) -> Option<(Millis, Usage)> {
        self.recent.back().copied()
    }

    /// The open bucket if it ended before `now`.
    fn close_due(&mut self, now: Millis) -> Option<Acc> {
        match self.open {
            Some(a) if a.start < bucket_start(now) => self.open.take(),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct SliverSeries {
    owner: Owner,
    series: Series,
}

#[derive(Debug, Default)]
struct NodeSeries {
    series: Series,
    /// Slivers counted in the latest measurement.
    reporting: u32,
}

/// What became of one node's report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Slivers of this node whose measurement was kept.
    pub accepted: u32,
    /// Slivers of another node it reported for the first time: (sliver, its real node).
    pub refused: Vec<(String, String)>,
    /// Sliver ids nobody placed (ignored).
    pub unknown: u32,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct Book {
    /// Sliver id -> where it is placed (None: no such sliver), and when it was last reported.
    owners: HashMap<String, (Option<Owner>, Millis)>,
    slivers: HashMap<String, SliverSeries>,
    nodes: HashMap<String, NodeSeries>,
    closed: VecDeque<Bucket>,
    /// (node, sliver) pairs already refused, so each is logged once.
    refused: HashSet<(String, String)>,
}

impl Book {
    /// The ids among `ids` whose placement is not known yet (to read from the database).
    pub fn unknown<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = ids
            .into_iter()
            .filter(|id| !self.owners.contains_key(*id))
            .map(str::to_string)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Remembers where `id` is placed (`None`: no sliver has that id).
    pub fn learn(&mut self, id: &str, owner: Option<Owner>, now: Millis) {
        self.owners.insert(id.to_string(), (owner, now));
    }

    /// Records what `node` measured at `at`: the measurements of its own slivers are kept, and
    /// their sum is the node's; those of slivers placed elsewhere are refused.
    pub fn record(&mut self, node: &str, at: Millis, samples: &[(String, Usage)]) -> Recorded {
        let mut r = Recorded::default();
        let mut total = Usage::default();
        for (id, u) in samples {
            let owner = match self.owners.get_mut(id.as_str()) {
                Some((Some(o), seen)) => {
                    *seen = at;
                    o.clone()
                }
                _ => {
                    r.unknown += 1;
                    continue;
                }
            };
            if owner.node != node {
                if self.refused.insert((node.to_string(), id.clone())) {
                    r.refused.push((id.clone(), owner.node));
                }
                continue;
            }
            let u = u.clamped();
            total = total.plus(u);
            r.accepted += 1;
            let s = self
                .slivers
                .entry(id.clone())
                .or_insert_with(|| SliverSeries {
                    owner: owner.clone(),
                    series: Series::default(),
                });
            if let Some(a) = s.series.add(at, u) {
                self.closed
                    .push_back(bucket(SeriesKind::Sliver, id, &owner, a));
            }
        }
        let n = self.nodes.entry(node.to_string()).or_default();
        n.reporting = r.accepted;
        if let Some(a) = n.series.add(at, total) {
            let owner = Owner {
                node: node.to_string(),
                slice_id: String::new(),
            };
            self.closed
                .push_back(bucket(SeriesKind::Node, node, &owner, a));
        }
        self.bound_pending();
        r
    }

    /// A sliver's latest measurement, if taken at or after `since`.
    pub fn sliver_now(&self, id: &str, since: Millis) -> Option<(Millis, Usage)> {
        self.slivers
            .get(id)
            .and_then(|s| s.series.last())
            .filter(|(t, _)| *t >= since)
    }

    /// A node's latest total and how many slivers it counted, if taken at or after `since`.
    pub fn node_now(&self, node: &str, since: Millis) -> Option<(Millis, Usage, u32)> {
        let n = self.nodes.get(node)?;
        let (t, u) = n.series.last().filter(|(t, _)| *t >= since)?;
        Some((t, u, n.reporting))
    }

    fn series(&self, kind: SeriesKind, subject: &str) -> Option<&Series> {
        match kind {
            SeriesKind::Sliver => self.slivers.get(subject).map(|s| &s.series),
            SeriesKind::Node => self.nodes.get(subject).map(|n| &n.series),
        }
    }

    /// Every measurement kept since `since`, oldest first.
    pub fn recent(&self, kind: SeriesKind, subject: &str, since: Millis) -> Vec<UsagePoint> {
        let Some(s) = self.series(kind, subject) else {
            return Vec::new();
        };
        s.recent
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|&(at, u)| UsagePoint {
                at,
                span_ms: 0,
                mean: u,
                peak: u,
            })
            .collect()
    }

    /// Buckets not in the database yet: closed ones waiting to be written, then the open one.
    pub fn unwritten(&self, kind: SeriesKind, subject: &str) -> Vec<UsagePoint> {
        let mut out: Vec<UsagePoint> = self
            .closed
            .iter()
            .filter(|b| b.kind == kind && b.subject == subject)
            .map(|b| b.point)
            .collect();
        if let Some(a) = self.series(kind, subject).and_then(|s| s.open) {
            out.push(a.point());
        }
        out
    }

    /// Closes every bucket that ended before `now` (a sliver that went quiet still gets its
    /// last bucket written) and hands over all closed buckets.
    pub fn take_closed(&mut self, now: Millis) -> Vec<Bucket> {
        for (id, s) in &mut self.slivers {
            if let Some(a) = s.series.close_due(now) {
                self.closed
                    .push_back(bucket(SeriesKind::Sliver, id, &s.owner, a));
            }
        }
        for (name, n) in &mut self.nodes {
            if let Some(a) = n.series.close_due(now) {
                let owner = Owner {
                    node: name.clone(),
                    slice_id: String::new(),
                };
                self.closed
                    .push_back(bucket(SeriesKind::Node, name, &owner, a));
            }
        }
        self.closed.drain(..).collect()
    }

    /// Buckets the database did not take, to try again with the next batch.
    pub fn put_back(&mut self, buckets: Vec<Bucket>) {
        for b in buckets.into_iter().rev() {
            self.closed.push_front(b);
        }
        self.bound_pending();
    }

    fn bound_pending(&mut self) {
        let over = self.closed.len().saturating_sub(MAX_PENDING);
        if over > 0 {
            tracing::warn!(dropped = over, "usage buckets not written in time dropped");
            self.closed.drain(..over);
        }
    }

    /// Forgets slivers of slices that ended (`live` says which slice ids are live), and slivers,
    /// nodes and placements quiet since before `now - RECENT` with nothing left to write.
    pub fn forget(&mut self, now: Millis, live: impl Fn(&str) -> bool) {
        let horizon = now - RECENT.as_millis() as i64;
        let quiet = |s: &Series| s.open.is_none() && s.last().is_none_or(|(t, _)| t < horizon);
        self.slivers
            .retain(|_, s| live(&s.owner.slice_id) && !quiet(&s.series));
        self.nodes.retain(|_, n| !quiet(&n.series));
        self.closed
            .retain(|b| b.kind == SeriesKind::Node || live(&b.slice_id));
        let slivers = &self.slivers;
        self.owners
            .retain(|id, (_, seen)| *seen >= horizon || slivers.contains_key(id));
        let owners = &self.owners;
        self.refused.retain(|(_, id)| owners.contains_key(id));
    }

    /// Slivers and nodes in the book (for tests and metrics).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.slivers.len(), self.nodes.len(), self.closed.len())
    }
}

fn bucket(kind: SeriesKind, subject: &str, owner: &Owner, a: Acc) -> Bucket {
    Bucket {
        kind,
        subject: subject.to_string(),
        slice_id: owner.slice_id.clone(),
        node: owner.node.clone(),
        samples: a.n,
        point: a.point(),
    }
}

#[cfg(test)]
mod tests;
