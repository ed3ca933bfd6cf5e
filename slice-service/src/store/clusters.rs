//! Cluster agents (one agent speaking for every node of a Kubernetes cluster): the cluster's
//! record and the certificates issued to it, apart from nodes' so that a node's serial is
//! never taken for a cluster's. Members are ordinary node rows with `nodes.cluster` set.

use sqlx::Row;

use super::Conn;
use crate::error::{Error, Result};

/// A cluster enrolled into a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub site: String,
    /// Host ports every member lends (each member's node gets this range).
    pub port_first: u32,
    pub port_last: u32,
    pub created_at: i64,
    /// When an admin revoked it; it must enroll again.
    pub revoked_at: Option<i64>,
}

/// A certificate issued to a cluster agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterCert {
    pub cluster: String,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Reads a cluster.
pub async fn get_cluster(c: &mut Conn, name: &str) -> Result<Option<Cluster>> {
    let row = sqlx::query(
        "SELECT name, site, port_first, port_last, created_at, revoked_at FROM clusters WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(Cluster {
            name: r.try_get("name")?,
            site: r.try_get("site")?,
            port_first: r.try_get::<i64, _>("port_first")? as u32,
            port_last: r.try_get::<i64, _>("port_last")? as u32,
            created_at: r.try_get("created_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Records a cluster, or rewrites an existing one (a new enrollment): not revoked.
pub async fn put_cluster(c: &mut Conn, k: &Cluster) -> Result<()> {
    sqlx::query("DELETE FROM clusters WHERE name = $1")
        .bind(&k.name)
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "INSERT INTO clusters (name, site, port_first, port_last, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(&k.name)
    .bind(&k.site)
    .bind(k.port_first as i64)
    .bind(k.port_last as i64)
    .bind(k.created_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Marks a cluster revoked and revokes every certificate it holds; returns how many were live.
pub async fn revoke_cluster(c: &mut Conn, name: &str, at: i64) -> Result<u64> {
    let r = sqlx::query("UPDATE clusters SET revoked_at = $1 WHERE name = $2")
        .bind(at)
        .bind(name)
        .execute(&mut *c)
        .await?;
    if r.rows_affected() == 0 {
        return Err(Error::not_found("cluster", name));
    }
    revoke_cluster_certs(c, name, at).await
}

/// Revokes every certificate of a cluster; returns how many were live.
pub async fn revoke_cluster_certs(c: &mut Conn, name: &str, at: i64) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE cluster_certs SET revoked_at = $1 WHERE cluster = $2 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(name)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Records a certificate issued to a cluster.
pub async fn insert_cluster_cert(
    c: &mut Conn,
    serial: &str,
    cluster: &str,
    issued_at: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_certs (serial, cluster, issued_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(serial)
    .bind(cluster)
    .bind(issued_at)
    .bind(expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Reads a cluster certificate by serial.
pub async fn get_cluster_cert(c: &mut Conn, serial: &str) -> Result<Option<ClusterCert>> {
    let row =
        sqlx::query("SELECT cluster, expires_at, revoked_at FROM cluster_certs WHERE serial = $1")
            .bind(serial)
            .fetch_optional(c)
            .await?;
    row.map(|r| {
        Ok(ClusterCert {
            cluster: r.try_get("cluster")?,
            expires_at: r.try_get("expires_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Forgets a cluster's expired certificates; returns how many live ones remain.
pub async fn prune_cluster_certs(c: &mut Conn, cluster: &str, now: i64) -> Result<i64> {
    sqlx::query("DELETE FROM cluster_certs WHERE cluster = $1 AND expires_at <= $2")
        .bind(cluster)
        .bind(now)
        .execute(&mut *c)
        .await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM cluster_certs WHERE cluster = $1 AND revoked_at IS NULL",
    )
    .bind(cluster)
    .fetch_one(c)
    .await?;
    Ok(row.try_get::<i64, _>("n")?)
}

/// The names of a cluster's member nodes.
pub async fn cluster_members(c: &mut Conn, cluster: &str) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM nodes WHERE cluster = $1 ORDER BY name")
        .bind(cluster)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("name")?))
        .collect()
}

/// The names of the revoked clusters (for node views), one query.
pub async fn revoked_clusters(c: &mut Conn) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM clusters WHERE revoked_at IS NOT NULL")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("name")?))
        .collect()
}
