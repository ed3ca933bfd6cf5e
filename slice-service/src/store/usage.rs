//! What slivers hold on nodes, as the database guards it: counters on node rows and one row per
//! held host port. A placement adds to them only where the node's capacity allows and the port
//! is free, so a second writer (a future replica) can never overcommit, whatever it believed.
//! A sliver holds from its insertion until it is deleted; both happen in the caller's
//! transaction, with the sliver's own row.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Conn;
use crate::error::Result;
use crate::model::{Node, Sliver};
use slicebed_units::Resources;

/// A node with what its slivers hold.
#[derive(Debug, Clone)]
pub struct NodeHolding {
    pub node: Node,
    pub allocated: Resources,
    pub slivers: u32,
    pub ports: BTreeSet<u32>,
}

/// Reserves what `v` needs on its node. `false` when the database refuses it (the node lacks
/// the capacity or a port is taken, or the node is gone): the caller must roll back, since part
/// of the reservation may already be written, and place again from fresh figures.
pub async fn hold(c: &mut Conn, v: &Sliver) -> Result<bool> {
    let r = v.resources;
    let done = sqlx::query(
        "UPDATE nodes SET cpu_used = cpu_used + $1, memory_used = memory_used + $2,
             disk_used = disk_used + $3, slivers_held = slivers_held + 1
         WHERE name = $4 AND cpu_used + $1 <= cpu_millis AND memory_used + $2 <= memory_bytes
             AND disk_used + $3 <= disk_bytes",
    )
    .bind(r.cpu_millis)
    .bind(r.memory_bytes)
    .bind(r.disk_bytes)
    .bind(&v.node)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if done != 1 {
        return Ok(false);
    }
    for p in &v.ports {
        let taken = sqlx::query(
            "INSERT INTO node_ports (node, port, sliver_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&v.node)
        .bind(i64::from(p.host_port))
        .bind(&v.id)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if taken != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Gives back what `v` held; call once, when it moves to deleted.
pub async fn release(c: &mut Conn, v: &Sliver) -> Result<()> {
    let r = v.resources;
    sqlx::query(
        "UPDATE nodes SET cpu_used = cpu_used - $1, memory_used = memory_used - $2,
             disk_used = disk_used - $3, slivers_held = slivers_held - 1
         WHERE name = $4 AND slivers_held > 0",
    )
    .bind(r.cpu_millis)
    .bind(r.memory_bytes)
    .bind(r.disk_bytes)
    .bind(&v.node)
    .execute(&mut *c)
    .await?;
    sqlx::query("DELETE FROM node_ports WHERE sliver_id = $1")
        .bind(&v.id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

const HOLDING_COLS: &str =
    "name, site, address, cpu_millis, memory_bytes, disk_bytes, port_first, \
     port_last, labels, admin_state, agent_version, last_heartbeat, created_at, drain_deadline, \
     cluster, cpu_used, memory_used, disk_used, slivers_held";

fn holding_from(r: &AnyRow) -> Result<NodeHolding> {
    Ok(NodeHolding {
        node: super::nodes::node_from(r)?,
        allocated: Resources::new(
            r.try_get("cpu_used")?,
            r.try_get("memory_used")?,
            r.try_get("disk_used")?,
        ),
        slivers: r.try_get::<i64, _>("slivers_held")?.max(0) as u32,
        ports: BTreeSet::new(),
    })
}

/// Every node with its holdings: read once, when the service starts.
pub async fn all_holdings(c: &mut Conn) -> Result<Vec<NodeHolding>> {
    let rows = sqlx::query(sql!("SELECT {HOLDING_COLS} FROM nodes ORDER BY name"))
        .fetch_all(&mut *c)
        .await?;
    let mut out: Vec<NodeHolding> = rows.iter().map(holding_from).collect::<Result<_>>()?;
    let ports = sqlx::query("SELECT node, port FROM node_ports ORDER BY node")
        .fetch_all(&mut *c)
        .await?;
    let mut by_node: std::collections::HashMap<String, BTreeSet<u32>> = Default::default();
    for r in &ports {
        let port: i64 = r.try_get("port")?;
        by_node
            .entry(r.try_get("node")?)
            .or_default()
            .insert(port as u32);
    }
    for h in &mut out {
        h.ports = by_node.remove(&h.node.name).unwrap_or_default();
    }
    Ok(out)
}

/// One node with its holdings (None: no such node).
pub async fn holding(c: &mut Conn, name: &str) -> Result<Option<NodeHolding>> {
    let Some(row) = sqlx::query(sql!("SELECT {HOLDING_COLS} FROM nodes WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let mut h = holding_from(&row)?;
    let ports = sqlx::query("SELECT port FROM node_ports WHERE node = $1")
        .bind(name)
        .fetch_all(&mut *c)
        .await?;
    for r in &ports {
        h.ports.insert(r.try_get::<i64, _>("port")? as u32);
    }
    Ok(Some(h))
}

/// Live slices with their site and how many of their slivers are not deleted: what site quotas
/// count. Read once, when the service starts.
pub async fn live_slice_tally(c: &mut Conn) -> Result<Vec<(String, String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT s.id, s.name, s.site, COUNT(v.id) AS n FROM slices s
         LEFT JOIN slivers v ON v.slice_id = s.id AND v.state <> 'deleted'
         WHERE s.life = 'live' GROUP BY s.id, s.name, s.site",
    )
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("name")?,
                r.try_get("site")?,
                r.try_get("n")?,
            ))
        })
        .collect()
}
