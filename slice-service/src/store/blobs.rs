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

/// Reserves `size` bytes of `site`'s image quota for `user`'s upload of `digest` (replacing an
/// earlier reservation of the same upload).
pub async fn reserve_upload(
    c: &mut Conn,
    user: &str,
    digest: &str,
    site: &str,
    size: u64,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO upload_reservations (user_name, digest, site, size, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_name, digest) DO UPDATE SET \
         site = excluded.site, size = excluded.size, updated_at = excluded.updated_at",
    )
    .bind(user)
    .bind(digest)
    .bind(site)
    .bind(size as i64)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// Bytes reserved against `site`'s quota by uploads in progress, leaving out `user`'s own
/// reservations of `except` (the upload or image being checked).
pub async fn site_reserved(c: &mut Conn, site: &str, user: &str, except: &[String]) -> Result<u64> {
    let rows =
        sqlx::query("SELECT user_name, digest, size FROM upload_reservations WHERE site = $1")
            .bind(site)
            .fetch_all(c)
            .await?;
    let mut total = 0u64;
    for r in &rows {
        let (who, d): (String, String) = (r.try_get("user_name")?, r.try_get("digest")?);
        if who == user && except.contains(&d) {
            continue;
        }
        total += r.try_get::<i64, _>("size")?.max(0) as u64;
    }
    Ok(total)
}

/// Ends `user`'s reservations of `digests` (their image was committed).
pub async fn release_reservations(c: &mut Conn, user: &str, digests: &[String]) -> Result<()> {
    for d in digests {
        sqlx::query("DELETE FROM upload_reservations WHERE user_name = $1 AND digest = $2")
            .bind(user)
            .bind(d)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Reservations last renewed before `before`: (user, digest), for the sweep to check.
pub async fn stale_reservations(c: &mut Conn, before: Millis) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT user_name, digest FROM upload_reservations WHERE updated_at < $1 \
         ORDER BY user_name, digest",
    )
    .bind(before)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("user_name")?, r.try_get("digest")?)))
        .collect()
}

/// Ends `user`'s reservation of `digest` if it was not renewed since `before`; whether it did.
pub async fn drop_stale_reservation(
    c: &mut Conn,
    user: &str,
    digest: &str,
    before: Millis,
) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM upload_reservations WHERE user_name = $1 AND digest = $2 AND updated_at < $3",
    )
    .bind(user)
    .bind(digest)
    .bind(before)
    .execute(c)
    .await?
    .rows_affected();
    Ok(n > 0)
}
