//! Measured usage of slivers and nodes (CPU, memory, disk, network), as node managers report
//! it in heartbeats: the value types, and [`book::Book`], the in-memory current values, recent
//! points and 5-minute buckets waiting to be written.
//!
//! Pure: no I/O, no clock of its own (every call is given the time), no tonic or prost types.
//! The core (`core/usage.rs`) feeds it and persists its buckets through the store
//! (`store/usage_history.rs`).

pub mod book;

use std::time::Duration;

use crate::model::Millis;

/// Length of one history bucket.
pub const BUCKET: Duration = Duration::from_secs(300);
/// How long buckets are kept.
pub const RETENTION: Duration = Duration::from_secs(2 * 86_400);
/// How far back every single measurement is kept in memory; longer histories are buckets.
pub const RECENT: Duration = Duration::from_secs(1800);

/// What a sliver (or the slivers of a node, or of a slice, together) uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Thousandths of a core.
    pub cpu_millis: i64,
    /// Working set in bytes.
    pub memory_bytes: i64,
    /// Bytes written to the container's own file system.
    pub disk_bytes: i64,
    /// Network bytes received per second.
    pub net_rx_bps: i64,
    /// Network bytes sent per second.
    pub net_tx_bps: i64,
}

impl Usage {
    /// Field by field sum (saturating: a lying node cannot wrap a total).
    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(o.disk_bytes),
            net_rx_bps: self.net_rx_bps.saturating_add(o.net_rx_bps),
            net_tx_bps: self.net_tx_bps.saturating_add(o.net_tx_bps),
        }
    }

    /// Field by field maximum.
    pub fn max(self, o: Usage) -> Usage {
        Usage {
            cpu_millis: self.cpu_millis.max(o.cpu_millis),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
            disk_bytes: self.disk_bytes.max(o.disk_bytes),
            net_rx_bps: self.net_rx_bps.max(o.net_rx_bps),
            net_tx_bps: self.net_tx_bps.max(o.net_tx_bps),
        }
    }

    /// A sum of `n` measurements as their mean, field by field, rounding to nearest.
    pub fn mean_of(self, n: i64) -> Usage {
        let d = |v: i64| (v + n / 2).div_euclid(n.max(1));
        Usage {
            cpu_millis: d(self.cpu_millis),
            memory_bytes: d(self.memory_bytes),
            disk_bytes: d(self.disk_bytes),
            net_rx_bps: d(self.net_rx_bps),
            net_tx_bps: d(self.net_tx_bps),
        }
    }

    /// Negative figures (from a confused or lying node) are read as zero.
    pub fn clamped(self) -> Usage {
        self.max(Usage::default())
    }
}

/// One point of a history: one measurement (`span_ms` 0) or a bucket of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UsagePoint {
    /// Time of the measurement, or start of the bucket (epoch ms).
    pub at: Millis,
    /// Length of the bucket; 0 for one measurement.
    pub span_ms: i64,
    /// Mean over the bucket (the measurement itself for one).
    pub mean: Usage,
    /// Highest value of each field over the bucket.
    pub peak: Usage,
}

/// What a history is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesKind {
    /// One sliver (subject: its id).
    Sliver,
    /// All slivers of one node (subject: the node's name).
    Node,
}

impl SeriesKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Sliver => "sliver",
            SeriesKind::Node => "node",
        }
    }
}

/// A closed bucket, as it is written to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub kind: SeriesKind,
    /// Sliver id or node name.
    pub subject: String,
    /// The sliver's slice id (empty for a node): what is dropped when the slice ends.
    pub slice_id: String,
    /// The sliver's node, or the node itself.
    pub node: String,
    /// Measurements in it.
    pub samples: i64,
    /// Its start, mean and peaks.
    pub point: UsagePoint,
}

/// Start of the bucket holding `at`.
pub fn bucket_start(at: Millis) -> Millis {
    let len = BUCKET.as_millis() as i64;
    at.div_euclid(len) * len
}

/// A history length as asked, made safe: at most [`RETENTION`].
pub fn history_window(asked: Option<Duration>) -> Option<Duration> {
    asked.filter(|d| !d.is_zero()).map(|d| d.min(RETENTION))
}
