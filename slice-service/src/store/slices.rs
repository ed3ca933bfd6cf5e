//! Slices, their members and their slivers.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_json, to_json, Conn};
use crate::error::{Error, Result};
use crate::model::{Slice, SliceLife, Sliver};
use crate::state::SliverState;
use slicebed_units::Resources;

const SLICE_COLS: &str =
    "id, name, owner, description, site, image, command, env, cpu_millis, memory_bytes, \
    disk_bytes, ports, placement, restart_policy, created_at, lease_expires_at, life, \
    node_loss, replace_after_ms";

fn slice_from(r: &AnyRow) -> Result<Slice> {
    Ok(Slice {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner: r.try_get("owner")?,
        members: Vec::new(),
        description: r.try_get("description")?,
        site: r.try_get("site")?,
        image: r.try_get("image")?,
        command: from_json(&r.try_get::<String, _>("command")?)?,
        env: from_json(&r.try_get::<String, _>("env")?)?,
        resources: Resources::new(
            r.try_get("cpu_millis")?,
            r.try_get("memory_bytes")?,
            r.try_get("disk_bytes")?,
        ),
        ports: from_json(&r.try_get::<String, _>("ports")?)?,
        placement: from_json(&r.try_get::<String, _>("placement")?)?,
        restart_policy: r.try_get::<String, _>("restart_policy")?.parse()?,
        created_at: r.try_get("created_at")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        life: SliceLife::parse(&r.try_get::<String, _>("life")?),
        node_loss: r.try_get::<String, _>("node_loss")?.parse()?,
        replace_after_ms: r.try_get("replace_after_ms")?,
    })
}

/// Inserts a live slice and its members; a live slice of that name is `AlreadyExists`.
pub async fn insert_slice(c: &mut Conn, s: &Slice) -> Result<()> {
    if live_slice(c, &s.name).await?.is_some() {
        return Err(Error::AlreadyExists {
            kind: "slice",
            name: s.name.clone(),
        });
    }
    sqlx::query(sql!(
        "INSERT INTO slices ({SLICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    ))
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.owner)
    .bind(&s.description)
    .bind(&s.site)
    .bind(&s.image)
    .bind(to_json(&s.command)?)
    .bind(to_json(&s.env)?)
    .bind(s.resources.cpu_millis)
    .bind(s.resources.memory_bytes)
    .bind(s.resources.disk_bytes)
    .bind(to_json(&s.ports)?)
    .bind(to_json(&s.placement)?)
    .bind(s.restart_policy.as_str())
    .bind(s.created_at)
    .bind(s.lease_expires_at)
    .bind(s.life.as_str())
    .bind(s.node_loss.as_str())
    .bind(s.replace_after_ms)
    .execute(&mut *c)
    .await?;
    for m in &s.members {
        sqlx::query("INSERT INTO slice_members (slice_id, user_name) VALUES ($1, $2)")
            .bind(&s.id)
            .bind(m)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

async fn with_members(c: &mut Conn, mut s: Slice) -> Result<Slice> {
    let rows =
        sqlx::query("SELECT user_name FROM slice_members WHERE slice_id = $1 ORDER BY user_name")
            .bind(&s.id)
            .fetch_all(c)
            .await?;
    s.members = rows
        .iter()
        .map(|r| r.try_get("user_name"))
        .collect::<Result<_, _>>()?;
    Ok(s)
}

/// The live slice of that name.
pub async fn live_slice(c: &mut Conn, name: &str) -> Result<Option<Slice>> {
    one_slice(c, "name = $1 AND life = 'live'", name).await
}

/// The live slice of that name, or the most recently ended one.
pub async fn latest_slice(c: &mut Conn, name: &str) -> Result<Option<Slice>> {
    let order = "name = $1 ORDER BY (CASE WHEN life = 'live' THEN 1 ELSE 0 END) DESC, created_at DESC LIMIT 1";
    one_slice(c, order, name).await
}

/// Every slice that ever had that name: the live one first, then the newest ended ones.
pub async fn slices_named(c: &mut Conn, name: &str) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLICE_COLS} FROM slices WHERE name = $1
         ORDER BY (CASE WHEN life = 'live' THEN 1 ELSE 0 END) DESC, created_at DESC"
    ))
    .bind(name)
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_members(c, slice_from(r)?).await?);
    }
    Ok(out)
}

/// At most one slice matching `condition` (with one `$1` bound to `arg`), with its members.
async fn one_slice(c: &mut Conn, condition: &str, arg: &str) -> Result<Option<Slice>> {
    let row = sqlx::query(sql!("SELECT {SLICE_COLS} FROM slices WHERE {condition}"))
        .bind(arg)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => Ok(Some(with_members(c, slice_from(&r)?).await?)),
        None => Ok(None),
    }
}

/// Slices, live only unless `include_ended`, by name.
pub async fn list_slices(c: &mut Conn, include_ended: bool) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLICE_COLS} FROM slices WHERE ($1 = 1 OR life = 'live') ORDER BY name, created_at"
    ))
    .bind(include_ended as i64)
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_members(c, slice_from(r)?).await?);
    }
    Ok(out)
}

/// Marks a slice ended (deleted or expired).
pub async fn end_slice(c: &mut Conn, id: &str, life: SliceLife, at: i64) -> Result<()> {
    sqlx::query("UPDATE slices SET life = $1, ended_at = $2 WHERE id = $3")
        .bind(life.as_str())
        .bind(at)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// Sets a new lease end.
pub async fn set_lease(c: &mut Conn, id: &str, expires: i64) -> Result<()> {
    sqlx::query("UPDATE slices SET lease_expires_at = $1, lease_warned = 0 WHERE id = $2")
        .bind(expires)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// Live slices whose lease ended at or before `now`.
pub async fn expired_slices(c: &mut Conn, now: i64) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLICE_COLS} FROM slices WHERE life = 'live' AND lease_expires_at <= $1 ORDER BY lease_expires_at"
    ))
    .bind(now)
    .fetch_all(c)
    .await?;
    rows.iter().map(slice_from).collect()
}

/// Live slices and live slivers held by a site's users.
pub async fn site_usage(c: &mut Conn, site: &str) -> Result<(i64, i64)> {
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM slices WHERE site = $1 AND life = 'live') AS s,
                (SELECT COUNT(*) FROM slivers v JOIN slices s ON s.id = v.slice_id
                   WHERE s.site = $1 AND s.life = 'live') AS v",
    )
    .bind(site)
    .fetch_one(c)
    .await?;
    Ok((r.try_get("s")?, r.try_get("v")?))
}

const SLIVER_COLS: &str = "v.id, v.slice_id, s.name AS slice_name, v.idx, v.node, v.site, v.state, v.cpu_millis, \
    v.memory_bytes, v.disk_bytes, v.ports, v.last_error, v.exit_code, v.generation, v.created_at, v.updated_at";

fn sliver_from(r: &AnyRow) -> Result<Sliver> {
    let state: String = r.try_get("state")?;
    Ok(Sliver {
        id: r.try_get("id")?,
        slice_id: r.try_get("slice_id")?,
        slice: r.try_get("slice_name")?,
        index: r.try_get::<i64, _>("idx")? as u32,
        node: r.try_get("node")?,
        site: r.try_get("site")?,
        state: SliverState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("stored sliver state {state:?}")))?,
        resources: Resources::new(
            r.try_get("cpu_millis")?,
            r.try_get("memory_bytes")?,
            r.try_get("disk_bytes")?,
        ),
        ports: from_json(&r.try_get::<String, _>("ports")?)?,
        last_error: r.try_get("last_error")?,
        exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
        generation: r.try_get("generation")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Inserts a sliver.
pub async fn insert_sliver(c: &mut Conn, v: &Sliver) -> Result<()> {
    sqlx::query(
        "INSERT INTO slivers (id, slice_id, idx, node, site, state, cpu_millis, memory_bytes, disk_bytes, ports,
         last_error, exit_code, generation, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&v.id)
    .bind(&v.slice_id)
    .bind(v.index as i64)
    .bind(&v.node)
    .bind(&v.site)
    .bind(v.state.as_str())
    .bind(v.resources.cpu_millis)
    .bind(v.resources.memory_bytes)
    .bind(v.resources.disk_bytes)
    .bind(to_json(&v.ports)?)
    .bind(&v.last_error)
    .bind(v.exit_code.map(i64::from))
    .bind(v.generation)
    .bind(v.created_at)
    .bind(v.updated_at)
    .execute(c)
    .await?;
    Ok(())
}

/// A slice's slivers by index.
pub async fn slivers_of_slice(c: &mut Conn, slice_id: &str) -> Result<Vec<Sliver>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id WHERE v.slice_id = $1 ORDER BY v.idx"
    ))
    .bind(slice_id)
    .fetch_all(c)
    .await?;
    rows.iter().map(sliver_from).collect()
}

/// A node's slivers that are not yet deleted.
pub async fn slivers_on_node(c: &mut Conn, node: &str) -> Result<Vec<Sliver>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id
         WHERE v.node = $1 AND v.state <> 'deleted' ORDER BY s.name, v.idx"
    ))
    .bind(node)
    .fetch_all(c)
    .await?;
    rows.iter().map(sliver_from).collect()
}

/// One sliver.
pub async fn get_sliver(c: &mut Conn, id: &str) -> Result<Option<Sliver>> {
    let row = sqlx::query(sql!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id WHERE v.id = $1"
    ))
    .bind(id)
    .fetch_optional(c)
    .await?;
    row.as_ref().map(sliver_from).transpose()
}

/// Writes a sliver's state, error and exit code.
pub async fn update_sliver_state(c: &mut Conn, v: &Sliver) -> Result<()> {
    sqlx::query("UPDATE slivers SET state = $1, last_error = $2, exit_code = $3, updated_at = $4 WHERE id = $5")
        .bind(v.state.as_str())
        .bind(&v.last_error)
        .bind(v.exit_code.map(i64::from))
        .bind(v.updated_at)
        .bind(&v.id)
        .execute(c)
        .await?;
    Ok(())
}

/// What live slivers hold on each node: reserved resources, sliver count and host ports.
#[derive(Debug, Default, Clone)]
pub struct NodeUsage {
    pub allocated: Resources,
    pub slivers: u32,
    pub ports: BTreeSet<u32>,
}

/// Usage of every node that holds slivers; read inside the placement transaction.
pub async fn node_usage(c: &mut Conn) -> Result<BTreeMap<String, NodeUsage>> {
    let rows = sqlx::query(
        "SELECT node, cpu_millis, memory_bytes, disk_bytes, ports FROM slivers WHERE state <> 'deleted'",
    )
    .fetch_all(c)
    .await?;
    let mut out: BTreeMap<String, NodeUsage> = BTreeMap::new();
    for r in &rows {
        let u = out.entry(r.try_get("node")?).or_default();
        let res = Resources::new(
            r.try_get("cpu_millis")?,
            r.try_get("memory_bytes")?,
            r.try_get("disk_bytes")?,
        );
        u.allocated = u.allocated.plus(res);
        u.slivers += 1;
        let ports: Vec<crate::model::AssignedPort> = from_json(&r.try_get::<String, _>("ports")?)?;
        u.ports.extend(ports.iter().map(|p| p.host_port));
    }
    Ok(out)
}

/// A slice by id, whatever its life.
pub async fn slice_by_id(c: &mut Conn, id: &str) -> Result<Option<Slice>> {
    one_slice(c, "id = $1", id).await
}

/// Live slices whose lease ends before `horizon` and that have not been warned yet.
pub async fn slices_to_warn(c: &mut Conn, horizon: i64) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sql!(
        "SELECT {SLICE_COLS} FROM slices WHERE life = 'live' AND lease_warned = 0 AND lease_expires_at <= $1"
    ))
    .bind(horizon)
    .fetch_all(c)
    .await?;
    rows.iter().map(slice_from).collect()
}

/// Records that a slice's expiry warning was written.
pub async fn mark_lease_warned(c: &mut Conn, id: &str) -> Result<()> {
    sqlx::query("UPDATE slices SET lease_warned = 1 WHERE id = $1")
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// Live slivers of live slices on a node.
pub async fn live_slivers_on_node(c: &mut Conn, node: &str) -> Result<Vec<Sliver>> {
    Ok(slivers_on_node(c, node)
        .await?
        .into_iter()
        .filter(|v| v.state.is_live())
        .collect())
}
