//! Usage history (`usage_buckets`): 5-minute buckets of slivers and nodes, written in batches
//! of many rows per statement, read by subject and time, pruned by age and by ended slice.
//! Also where a sliver is placed, read once per sliver so that heartbeats need no read.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::slices::{placeholders, IN_CHUNK};
use super::Conn;
use crate::error::Result;
use crate::model::Millis;
use crate::usage::book::Owner;
use crate::usage::{Bucket, SeriesKind, Usage, UsagePoint, BUCKET};

/// Rows per INSERT statement (16 values each: far below either database's limit).
const WRITE_CHUNK: usize = 200;

const COLS: &str = "kind, subject, start_at, slice_id, node, samples, cpu_mean, cpu_peak, \
                    memory_mean, memory_peak, disk_mean, disk_peak, rx_mean, rx_peak, tx_mean, tx_peak";

/// The multi-row upsert of `n` buckets.
fn write_query(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("({})", placeholders(i * 16 + 1, 16)))
        .collect();
    format!(
        "INSERT INTO usage_buckets ({COLS}) VALUES {} ON CONFLICT (kind, subject, start_at) DO UPDATE \
         SET samples = excluded.samples, cpu_mean = excluded.cpu_mean, cpu_peak = excluded.cpu_peak, \
         memory_mean = excluded.memory_mean, memory_peak = excluded.memory_peak, \
         disk_mean = excluded.disk_mean, disk_peak = excluded.disk_peak, rx_mean = excluded.rx_mean, \
         rx_peak = excluded.rx_peak, tx_mean = excluded.tx_mean, tx_peak = excluded.tx_peak",
        rows.join(", ")
    )
}

/// Writes closed buckets (a bucket written again replaces the first: a restart can close the
/// same bucket twice). The caller's transaction makes the batch all or nothing.
pub async fn write_usage_buckets(c: &mut Conn, buckets: &[Bucket]) -> Result<()> {
    for chunk in buckets.chunks(WRITE_CHUNK) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(write_query(chunk.len())));
        for b in chunk {
            let (m, p) = (b.point.mean, b.point.peak);
            q = q
                .bind(b.kind.as_str())
                .bind(b.subject.clone())
                .bind(b.point.at)
                .bind(b.slice_id.clone())
                .bind(b.node.clone())
                .bind(b.samples);
            for (mean, peak) in [
                (m.cpu_millis, p.cpu_millis),
                (m.memory_bytes, p.memory_bytes),
                (m.disk_bytes, p.disk_bytes),
                (m.net_rx_bps, p.net_rx_bps),
                (m.net_tx_bps, p.net_tx_bps),
            ] {
                q = q.bind(mean).bind(peak);
            }
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

fn point_from(r: &AnyRow) -> Result<(String, UsagePoint)> {
    let u = |f: &str| -> Result<Usage> {
        Ok(Usage {
            cpu_millis: r.try_get(format!("cpu_{f}").as_str())?,
            memory_bytes: r.try_get(format!("memory_{f}").as_str())?,
            disk_bytes: r.try_get(format!("disk_{f}").as_str())?,
            net_rx_bps: r.try_get(format!("rx_{f}").as_str())?,
            net_tx_bps: r.try_get(format!("tx_{f}").as_str())?,
        })
    };
    let point = UsagePoint {
        at: r.try_get("start_at")?,
        span_ms: BUCKET.as_millis() as i64,
        mean: u("mean")?,
        peak: u("peak")?,
    };
    Ok((r.try_get("subject")?, point))
}

/// The query of `usage_buckets` for `n` subjects (primary key ranges).
pub(crate) fn read_query(n: usize) -> String {
    format!(
        "SELECT {COLS} FROM usage_buckets WHERE kind = $1 AND subject IN ({}) AND start_at >= $2 \
         ORDER BY subject, start_at",
        placeholders(3, n)
    )
}

/// The written buckets of these subjects that start at or after `since`: (subject, point),
/// by subject then time.
pub async fn usage_buckets(
    c: &mut Conn,
    kind: SeriesKind,
    subjects: &[String],
    since: Millis,
) -> Result<Vec<(String, UsagePoint)>> {
    let mut out = Vec::new();
    for chunk in subjects.chunks(IN_CHUNK) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(read_query(chunk.len())))
            .bind(kind.as_str())
            .bind(since);
        for s in chunk {
            q = q.bind(s.clone());
        }
        for r in q.fetch_all(&mut *c).await? {
            out.push(point_from(&r)?);
        }
    }
    Ok(out)
}

/// The query of `prune_usage_before` (`usage_buckets_start`).
pub(crate) const PRUNE_BEFORE: &str = "DELETE FROM usage_buckets WHERE start_at < $1";

/// The query of `prune_usage_of_slices` for `n` slices (`usage_buckets_slice`).
pub(crate) fn prune_slices_query(n: usize) -> String {
    format!(
        "DELETE FROM usage_buckets WHERE slice_id IN ({})",
        placeholders(1, n)
    )
}

/// The query of `sliver_owners` for `n` slivers (primary key).
pub(crate) fn owners_query(n: usize) -> String {
    format!(
        "SELECT id, node, slice_id FROM slivers WHERE id IN ({}) AND state <> 'deleted'",
        placeholders(1, n)
    )
}

/// Deletes buckets that started before `before`; returns how many.
pub async fn prune_usage_before(c: &mut Conn, before: Millis) -> Result<u64> {
    Ok(sqlx::query(PRUNE_BEFORE)
        .bind(before)
        .execute(c)
        .await?
        .rows_affected())
}

/// Deletes the buckets of the slivers of these slices; returns how many.
pub async fn prune_usage_of_slices(c: &mut Conn, slice_ids: &[String]) -> Result<u64> {
    let mut n = 0;
    for chunk in slice_ids.chunks(IN_CHUNK) {
        let text = prune_slices_query(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for id in chunk {
            q = q.bind(id.clone());
        }
        n += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// The slices whose slivers have written buckets (read at start, then kept in memory).
pub async fn usage_slice_ids(c: &mut Conn) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT slice_id FROM usage_buckets WHERE slice_id <> '' ORDER BY slice_id",
    )
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("slice_id")?)).collect()
}

/// Where these slivers are placed, for those that exist and are not deleted.
pub async fn sliver_owners(c: &mut Conn, ids: &[String]) -> Result<Vec<(String, Owner)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let text = owners_query(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(&mut *c).await? {
            let owner = Owner {
                node: r.try_get("node")?,
                slice_id: r.try_get("slice_id")?,
            };
            out.push((r.try_get("id")?, owner));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
