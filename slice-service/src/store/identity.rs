//! Node identities: the client certificates issued to each node (by serial) and what it
//! enrolled with. A certificate counts only while its row says so; nothing here signs.

use sqlx::Row;

use super::{to_json, Conn};
use crate::error::Result;
use slicebed_units::Resources;

/// A node's enrollment record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Capacity it enrolled with: the most it may claim later.
    pub enrolled: Resources,
    /// When an admin revoked it; it must enroll again.
    pub revoked_at: Option<i64>,
}

/// A recorded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub node: String,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Reads a node's enrollment record.
pub async fn node_identity(c: &mut Conn, node: &str) -> Result<Option<NodeIdentity>> {
    let row = sqlx::query(
        "SELECT cpu_millis, memory_bytes, disk_bytes, revoked_at FROM node_identity WHERE node = $1",
    )
    .bind(node)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(NodeIdentity {
            enrolled: Resources::new(
                r.try_get("cpu_millis")?,
                r.try_get("memory_bytes")?,
                r.try_get("disk_bytes")?,
            ),
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Writes a node's enrollment record afresh (a new or repeated enrollment): not revoked.
pub async fn set_node_identity(c: &mut Conn, node: &str, enrolled: Resources) -> Result<()> {
    sqlx::query("DELETE FROM node_identity WHERE node = $1")
        .bind(node)
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "INSERT INTO node_identity (node, cpu_millis, memory_bytes, disk_bytes, revoked_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(node)
    .bind(enrolled.cpu_millis)
    .bind(enrolled.memory_bytes)
    .bind(enrolled.disk_bytes)
    .execute(c)
    .await?;
    Ok(())
}

/// Whether the node was ever issued a certificate.
pub async fn has_certs(c: &mut Conn, node: &str) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM node_certs WHERE node = $1")
        .bind(node)
        .fetch_one(c)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Records an issued certificate.
pub async fn insert_cert(
    c: &mut Conn,
    serial: &str,
    node: &str,
    issued_at: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO node_certs (serial, node, issued_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(serial)
    .bind(node)
    .bind(issued_at)
    .bind(expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Forgets a node's expired certificates; returns how many unexpired, unrevoked ones remain.
pub async fn prune_certs(c: &mut Conn, node: &str, now: i64) -> Result<i64> {
    sqlx::query("DELETE FROM node_certs WHERE node = $1 AND expires_at <= $2")
        .bind(node)
        .bind(now)
        .execute(&mut *c)
        .await?;
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM node_certs WHERE node = $1 AND revoked_at IS NULL")
            .bind(node)
            .fetch_one(c)
            .await?;
    Ok(row.try_get::<i64, _>("n")?)
}

/// Reads a certificate by serial.
pub async fn get_cert(c: &mut Conn, serial: &str) -> Result<Option<CertRecord>> {
    let row = sqlx::query("SELECT node, expires_at, revoked_at FROM node_certs WHERE serial = $1")
        .bind(serial)
        .fetch_optional(c)
        .await?;
    row.map(|r| {
        Ok(CertRecord {
            node: r.try_get("node")?,
            expires_at: r.try_get("expires_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Revokes every certificate of a node (none comes back to life on a later enrollment);
/// returns how many were live.
pub async fn revoke_certs(c: &mut Conn, node: &str, at: i64) -> Result<u64> {
    let r =
        sqlx::query("UPDATE node_certs SET revoked_at = $1 WHERE node = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(node)
            .execute(c)
            .await?;
    Ok(r.rows_affected())
}

/// Marks a node's identity revoked.
pub async fn revoke_identity(c: &mut Conn, node: &str, at: i64) -> Result<()> {
    sqlx::query("UPDATE node_identity SET revoked_at = $1 WHERE node = $2")
        .bind(at)
        .bind(node)
        .execute(c)
        .await?;
    Ok(())
}

/// Replaces a node's labels.
pub async fn set_node_labels(
    c: &mut Conn,
    node: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    sqlx::query("UPDATE nodes SET labels = $1 WHERE name = $2")
        .bind(to_json(labels)?)
        .bind(node)
        .execute(c)
        .await?;
    Ok(())
}
