//! Nodes. Liveness is not stored per heartbeat; only connects and disconnects touch `last_heartbeat`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_json, to_json, Conn};
use crate::error::{Error, Result};
use crate::model::{AdminState, Node};
use slicebed_units::Resources;

pub(super) fn node_from(r: &AnyRow) -> Result<Node> {
    let labels: String = r.try_get("labels")?;
    let state: String = r.try_get("admin_state")?;
    Ok(Node {
        name: r.try_get("name")?,
        site: r.try_get("site")?,
        address: r.try_get("address")?,
        capacity: Resources::new(
            r.try_get("cpu_millis")?,
            r.try_get("memory_bytes")?,
            r.try_get("disk_bytes")?,
        ),
        port_first: r.try_get::<i64, _>("port_first")? as u32,
        port_last: r.try_get::<i64, _>("port_last")? as u32,
        labels: from_json(&labels)?,
        admin_state: AdminState::parse(&state),
        agent_version: r.try_get("agent_version")?,
        last_heartbeat: r.try_get("last_heartbeat")?,
        created_at: r.try_get("created_at")?,
        drain_deadline: r.try_get("drain_deadline")?,
        cluster: r.try_get("cluster")?,
    })
}

const COLS: &str =
    "name, site, address, cpu_millis, memory_bytes, disk_bytes, port_first, port_last, labels, \
                    admin_state, agent_version, last_heartbeat, created_at, drain_deadline, cluster";

/// Inserts a node; a duplicate name is `AlreadyExists`.
pub async fn insert_node(c: &mut Conn, n: &Node) -> Result<()> {
    if get_node(c, &n.name).await?.is_some() {
        return Err(Error::AlreadyExists {
            kind: "node",
            name: n.name.clone(),
        });
    }
    sqlx::query(sql!(
        "INSERT INTO nodes ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&n.name)
    .bind(&n.site)
    .bind(&n.address)
    .bind(n.capacity.cpu_millis)
    .bind(n.capacity.memory_bytes)
    .bind(n.capacity.disk_bytes)
    .bind(n.port_first as i64)
    .bind(n.port_last as i64)
    .bind(to_json(&n.labels)?)
    .bind(n.admin_state.as_str())
    .bind(&n.agent_version)
    .bind(n.last_heartbeat)
    .bind(n.created_at)
    .bind(n.drain_deadline)
    .bind(n.cluster.clone())
    .execute(c)
    .await?;
    Ok(())
}

/// Rewrites what a node reports about itself on connect.
pub async fn update_node_report(c: &mut Conn, n: &Node) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET address = $1, cpu_millis = $2, memory_bytes = $3, disk_bytes = $4, port_first = $5,
         port_last = $6, labels = $7, agent_version = $8, last_heartbeat = $9 WHERE name = $10",
    )
    .bind(&n.address)
    .bind(n.capacity.cpu_millis)
    .bind(n.capacity.memory_bytes)
    .bind(n.capacity.disk_bytes)
    .bind(n.port_first as i64)
    .bind(n.port_last as i64)
    .bind(to_json(&n.labels)?)
    .bind(&n.agent_version)
    .bind(n.last_heartbeat)
    .bind(&n.name)
    .execute(c)
    .await?;
    Ok(())
}

/// Records the last heartbeat durably.
pub async fn set_last_heartbeat(c: &mut Conn, name: &str, at: i64) -> Result<()> {
    sqlx::query("UPDATE nodes SET last_heartbeat = $1 WHERE name = $2")
        .bind(at)
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

/// Sets the administrative state and the drain deadline (None clears it).
pub async fn set_admin_state(
    c: &mut Conn,
    name: &str,
    s: AdminState,
    deadline: Option<i64>,
) -> Result<()> {
    sqlx::query("UPDATE nodes SET admin_state = $1, drain_deadline = $2 WHERE name = $3")
        .bind(s.as_str())
        .bind(deadline)
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

/// Reads a node.
pub async fn get_node(c: &mut Conn, name: &str) -> Result<Option<Node>> {
    let row = sqlx::query(sql!("SELECT {COLS} FROM nodes WHERE name = $1"))
        .bind(name)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(node_from).transpose()
}

/// Nodes, optionally of one site, by site then name.
pub async fn list_nodes(c: &mut Conn, site: Option<&str>) -> Result<Vec<Node>> {
    let rows = sqlx::query(sql!(
        "SELECT {COLS} FROM nodes WHERE ($1 = '' OR site = $1) ORDER BY site, name"
    ))
    .bind(site.unwrap_or(""))
    .fetch_all(c)
    .await?;
    rows.iter().map(node_from).collect()
}

/// Deletes a node row (its slivers' rows stay as history).
pub async fn delete_node(c: &mut Conn, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM nodes WHERE name = $1")
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

/// `nodes_named_query(n)`: `n` nodes by name (primary key).
pub(crate) fn nodes_named_query(n: usize) -> String {
    format!(
        "SELECT {COLS} FROM nodes WHERE name IN ({})",
        super::slices::placeholders(1, n)
    )
}

/// The nodes of these names that exist (the nodes of a page of slivers), in one query per
/// `IN_CHUNK` names.
pub async fn nodes_named(c: &mut Conn, names: &[String]) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    for chunk in names.chunks(super::slices::IN_CHUNK) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(nodes_named_query(chunk.len())));
        for n in chunk {
            q = q.bind(n.clone());
        }
        for r in q.fetch_all(&mut *c).await? {
            out.push(node_from(&r)?);
        }
    }
    Ok(out)
}
