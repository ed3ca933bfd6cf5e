//! Counts for the operator metrics (`crate::metrics`): one grouped query per table, read
//! through the read pool at scrape time, and the pools' own occupancy.

use std::time::{Duration, Instant};

use sqlx::Row;

use super::{Conn, Db};
use crate::error::Result;

/// Slices by stored life (`live`, `deleted`, `expired`).
pub async fn count_slices_by_life(c: &mut Conn) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT life, COUNT(*) AS n FROM slices GROUP BY life")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("life")?, r.try_get("n")?)))
        .collect()
}

/// Slivers by node and stored state (the node, so the caller can tell which live ones sit on
/// a node it cannot see; the `slivers_node` index covers it).
pub async fn count_slivers_by_node_state(c: &mut Conn) -> Result<Vec<(String, String, i64)>> {
    let rows = sqlx::query("SELECT node, state, COUNT(*) AS n FROM slivers GROUP BY node, state")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("node")?, r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

/// Occupancy of one connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections nobody holds.
    pub idle: u32,
    /// The most it may open.
    pub max: u32,
}

fn pool_stats(p: &sqlx::AnyPool) -> PoolStats {
    PoolStats {
        size: p.size(),
        idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
        max: p.options().get_max_connections(),
    }
}

impl Db {
    /// Occupancy of the transaction pool and of the read pool (on PostgreSQL and in-memory
    /// SQLite they are the same pool).
    pub fn pool_stats(&self) -> (PoolStats, PoolStats) {
        (pool_stats(&self.write), pool_stats(&self.read))
    }

    /// A read connection and how long the pool made the caller wait for it.
    pub async fn timed_conn(&self) -> Result<(sqlx::pool::PoolConnection<sqlx::Any>, Duration)> {
        let start = Instant::now();
        let c = self.read.acquire().await?;
        Ok((c, start.elapsed()))
    }
}
