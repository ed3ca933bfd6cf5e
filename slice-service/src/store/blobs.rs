//! Records of the image store's blobs: which are complete on disk, who proved holding them,
//! which are unreferenced (garbage collection) and which a node may fetch.
//!
//! Only records: the files are `images/blobs.rs`'s, the rules `core/images.rs`'s.

use sqlx::Row;

use super::Conn;
use crate::error::Result;
use crate::model::Millis;

/// Records a complete blob (or marks it touched by a push again).
pub async fn upsert_blob(c: &mut Conn, digest: &str, size: u64, now: Millis) -> Result<()> {
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
    )
    .bind(digest)
    .bind(size as i64)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// Marks blobs touched by a push at `now` (0 clears it: referenced by a committed image).
pub async fn touch_blobs(c: &mut Conn, digests: &[String], now: Millis) -> Result<()> {
    for d in digests {
        sqlx::query("UPDATE blobs SET touched_at = $1 WHERE digest = $2")
            .bind(now)
            .bind(d)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Records that `user` uploaded `digest`'s bytes.
pub async fn add_holder(c: &mut Conn, digest: &str, user: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO blob_holders (digest, user_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(digest)
    .bind(user)
    .execute(c)
    .await?;
    Ok(())
}

/// The size of a recorded blob.
pub async fn blob_size(c: &mut Conn, digest: &str) -> Result<Option<u64>> {
    let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
        .bind(digest)
        .fetch_optional(c)
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("size"))
        .transpose()?
        .map(|n| n as u64))
}

/// Whether `user` uploaded `digest` themselves.
pub async fn is_holder(c: &mut Conn, digest: &str, user: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM blob_holders WHERE digest = $1 AND user_name = $2")
        .bind(digest)
        .bind(user)
        .fetch_optional(c)
        .await?;
    Ok(row.is_some())
}

/// Unreferenced blobs not touched by a push since `touched_before`: what GC may remove.
pub async fn collectable_blobs(c: &mut Conn, touched_before: Millis) -> Result<Vec<(String, u64)>> {
    let rows = sqlx::query(
        "SELECT digest, size FROM blobs b WHERE touched_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM image_blobs ib WHERE ib.blob = b.digest) ORDER BY digest",
    )
    .bind(touched_before)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("digest")?, r.try_get::<i64, _>("size")? as u64)))
        .collect()
}

/// Deletes a blob's records, if still unreferenced; whether it did.
pub async fn delete_blob_if_unreferenced(c: &mut Conn, digest: &str) -> Result<bool> {
    let used = sqlx::query("SELECT 1 AS one FROM image_blobs WHERE blob = $1 LIMIT 1")
        .bind(digest)
        .fetch_optional(&mut *c)
        .await?;
    if used.is_some() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM blob_holders WHERE digest = $1")
        .bind(digest)
        .execute(&mut *c)
        .await?;
    let n = sqlx::query("DELETE FROM blobs WHERE digest = $1")
        .bind(digest)
        .execute(c)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Whether the node may fetch `blob`: it belongs to a public image, or to the image pinned by
/// a live slice with a sliver on this node.
pub async fn node_may_fetch(c: &mut Conn, node: &str, blob: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM image_blobs ib WHERE ib.blob = $1 AND ( \
           EXISTS (SELECT 1 FROM image_repos r WHERE r.name = ib.name AND r.visibility = 'public') \
           OR EXISTS (SELECT 1 FROM slices s JOIN slivers v ON v.slice_id = s.id \
                      WHERE s.life = 'live' AND s.image_digest = ib.manifest \
                        AND v.node = $2 AND v.state <> 'deleted')) LIMIT 1",
    )
    .bind(blob)
    .bind(node)
    .fetch_optional(c)
    .await?;
    Ok(row.is_some())
}

/// Whether `digest` is unreferenced and untouched by a push since `touched_before`.
pub async fn blob_collectable(c: &mut Conn, digest: &str, touched_before: Millis) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM blobs b WHERE b.digest = $1 AND b.touched_at < $2 \
         AND NOT EXISTS (SELECT 1 FROM image_blobs ib WHERE ib.blob = b.digest)",
    )
    .bind(digest)
    .bind(touched_before)
    .fetch_optional(c)
    .await?;
    Ok(row.is_some())
}
