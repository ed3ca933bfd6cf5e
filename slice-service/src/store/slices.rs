//! Slices, their members and their slivers.

use std::collections::BTreeMap;

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
    node_loss, replace_after_ms, image_digest";

fn slice_from(r: &AnyRow) -> Result<Slice> {
    Ok(Slice {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner: r.try_get("owner")?,
        members: Vec::new(),
        description: r.try_get("description")?,
        site: r.try_get("site")?,
        image: r.try_get("image")?,
        image_digest: r.try_get("image_digest")?,
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
        "INSERT INTO slices ({SLICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
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
    .bind(&s.image_digest)
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

/// The members of one slice, by name (primary key).
pub(crate) const MEMBERS_OF_SLICE: &str =
    "SELECT user_name FROM slice_members WHERE slice_id = $1 ORDER BY user_name";

async fn with_members(c: &mut Conn, mut s: Slice) -> Result<Slice> {
    let rows = sqlx::query(MEMBERS_OF_SLICE)
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
    one_slice(c, LIVE_BY_NAME, name).await
}

/// The live slice of that name, or the most recently ended one.
pub async fn latest_slice(c: &mut Conn, name: &str) -> Result<Option<Slice>> {
    let order = "name = $1 ORDER BY (CASE WHEN life = 'live' THEN 1 ELSE 0 END) DESC, created_at DESC LIMIT 1";
    one_slice(c, order, name).await
}

/// The condition of `live_slice` (the partial unique index `slices_live_name`).
pub(crate) const LIVE_BY_NAME: &str = "name = $1 AND life = 'live'";
/// The condition of `slice_by_id` (primary key).
pub(crate) const BY_ID: &str = "id = $1";

/// The query of `one_slice` with `condition`.
pub(crate) fn one_slice_query(condition: &str) -> String {
    format!("SELECT {SLICE_COLS} FROM slices WHERE {condition}")
}

/// At most one slice matching `condition` (with one `$1` bound to `arg`), with its members.
async fn one_slice(c: &mut Conn, condition: &str, arg: &str) -> Result<Option<Slice>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(one_slice_query(condition)))
        .bind(arg)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => Ok(Some(with_members(c, slice_from(&r)?).await?)),
        None => Ok(None),
    }
}

/// Who reads, as far as which slices they may see; mirrors `core::slices::can_view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// Admins see every slice.
    All,
    /// Everyone else sees the slices they own or are a member of, and a PI those of their site.
    User {
        name: &'a str,
        pi_site: Option<&'a str>,
    },
}

/// A query argument, bound in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// Binds `args` in order.
fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// `$from, $from+1, ...`: `n` placeholders for an IN list.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The visibility condition on a row of `slices` (empty for admins), with the user's name as
/// `$u` and a PI's site as `$u + 1`.
fn visible_to(viewer: Viewer<'_>, u: usize) -> String {
    match viewer {
        Viewer::All => String::new(),
        Viewer::User { pi_site, .. } => {
            let site = if pi_site.is_some() {
                format!(" OR site = ${}", u + 1)
            } else {
                String::new()
            };
            format!(
                " AND (owner = ${u}{site} OR EXISTS (SELECT 1 FROM slice_members m \
                 WHERE m.slice_id = slices.id AND m.user_name = ${u}))"
            )
        }
    }
}

fn viewer_args(viewer: Viewer<'_>) -> Vec<Arg> {
    match viewer {
        Viewer::All => Vec::new(),
        Viewer::User { name, pi_site } => std::iter::once(name)
            .chain(pi_site)
            .map(|s| Arg::Text(s.to_string()))
            .collect(),
    }
}

/// The query of `visible_slice` and its arguments: the slices of one name (by `slices_name`,
/// a name's whole history and nothing else) that `viewer` may see, the live one first, then
/// the newest ended ones; the first.
pub(crate) fn visible_slice_query(name: &str, viewer: Viewer<'_>) -> (String, Vec<Arg>) {
    let cond = visible_to(viewer, 2);
    let sql = format!(
        "SELECT {SLICE_COLS} FROM slices WHERE name = $1{cond}
         ORDER BY (CASE WHEN life = 'live' THEN 1 ELSE 0 END) DESC, created_at DESC, id DESC LIMIT 1"
    );
    let mut args = vec![Arg::Text(name.to_string())];
    args.extend(viewer_args(viewer));
    (sql, args)
}

/// The slice of that name `viewer` may see: the live one if they may see it, else the newest
/// ended one they may see. Names are reused, so each slice that ever had the name is judged
/// on its own.
pub async fn visible_slice(c: &mut Conn, name: &str, viewer: Viewer<'_>) -> Result<Option<Slice>> {
    let (text, args) = visible_slice_query(name, viewer);
    let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(text)), &args)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => Ok(Some(with_members(c, slice_from(&r)?).await?)),
        None => Ok(None),
    }
}

/// Where a listing of slices stands: slices are listed by name, then creation, then id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceKey {
    pub name: String,
    pub created_at: i64,
    pub id: String,
}

impl SliceKey {
    /// The key of a slice.
    pub fn of(s: &Slice) -> Self {
        SliceKey {
            name: s.name.clone(),
            created_at: s.created_at,
            id: s.id.clone(),
        }
    }

    /// Before every slice.
    pub fn first() -> Self {
        SliceKey {
            name: String::new(),
            created_at: i64::MIN,
            id: String::new(),
        }
    }
}

/// Which slices to list.
#[derive(Debug, Clone)]
pub struct SliceList<'a> {
    pub viewer: Viewer<'a>,
    /// Deleted and expired slices too.
    pub include_ended: bool,
    /// Only slices of this site.
    pub site: Option<&'a str>,
    /// From this key on, included.
    pub from: SliceKey,
    /// At most this many.
    pub limit: i64,
}

/// The query of `list_visible_slices` and its arguments. Each form reads only what the
/// viewer may see: an admin's walks `slices_live_name` or `slices_name` (or `slices_site`) in
/// key order from the page's key and stops at the limit; a user's collects the ids they own
/// (`slices_owner`), are a member of (`slice_members_user`) and, for a PI, their site's
/// (`slices_site`), then sorts those.
pub(crate) fn list_slices_query(l: &SliceList<'_>) -> (String, Vec<Arg>) {
    let live = if l.include_ended {
        ""
    } else {
        " AND life = 'live'"
    };
    let mut args = vec![
        Arg::Text(l.from.name.clone()),
        Arg::Int(l.from.created_at),
        Arg::Text(l.from.id.clone()),
    ];
    let mut sql = format!(
        "SELECT {SLICE_COLS} FROM slices WHERE (name, created_at, id) >= ($1, $2, $3){live}"
    );
    if let Some(site) = l.site {
        args.push(Arg::Text(site.to_string()));
        sql.push_str(&format!(" AND site = ${}", args.len()));
    }
    if let Viewer::User { name, pi_site } = l.viewer {
        args.push(Arg::Text(name.to_string()));
        let u = args.len();
        sql.push_str(&format!(
            " AND id IN (SELECT id FROM slices WHERE owner = ${u}{live} \
             UNION SELECT slice_id FROM slice_members WHERE user_name = ${u}"
        ));
        if let Some(site) = pi_site {
            args.push(Arg::Text(site.to_string()));
            sql.push_str(&format!(
                " UNION SELECT id FROM slices WHERE site = ${}{live}",
                args.len()
            ));
        }
        sql.push(')');
    }
    args.push(Arg::Int(l.limit));
    sql.push_str(&format!(
        " ORDER BY name, created_at, id LIMIT ${}",
        args.len()
    ));
    (sql, args)
}

/// The slices `l.viewer` may see, in key order from `l.from`, at most `l.limit`, with their
/// members (one query for all of them).
pub async fn list_visible_slices(c: &mut Conn, l: &SliceList<'_>) -> Result<Vec<Slice>> {
    let (text, args) = list_slices_query(l);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(text)), &args)
        .fetch_all(&mut *c)
        .await?;
    let mut out = rows.iter().map(slice_from).collect::<Result<Vec<_>>>()?;
    let ids: Vec<String> = out.iter().map(|s| s.id.clone()).collect();
    let mut members = members_of(c, &ids).await?;
    for s in &mut out {
        s.members = members.remove(&s.id).unwrap_or_default();
    }
    Ok(out)
}

/// Largest IN list one query binds; longer lists are read in chunks.
pub(super) const IN_CHUNK: usize = 500;

/// `members_query(n)`: the members of `n` slices by id, by slice then name (primary key).
pub(crate) fn members_query(n: usize) -> String {
    format!(
        "SELECT slice_id, user_name FROM slice_members WHERE slice_id IN ({}) ORDER BY slice_id, user_name",
        placeholders(1, n)
    )
}

/// The members of each of these slices, by name.
async fn members_of(c: &mut Conn, ids: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(members_query(chunk.len())));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(&mut *c).await? {
            out.entry(r.try_get("slice_id")?)
                .or_default()
                .push(r.try_get("user_name")?);
        }
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

/// The query of `expired_slices`: by the partial index `slices_live_lease`, so it costs the
/// slices due, not the slices ever created.
pub(crate) fn expired_slices_query() -> String {
    format!(
        "SELECT {SLICE_COLS} FROM slices WHERE life = 'live' AND lease_expires_at <= $1 ORDER BY lease_expires_at"
    )
}

/// Live slices whose lease ended at or before `now`.
pub async fn expired_slices(c: &mut Conn, now: i64) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(expired_slices_query()))
        .bind(now)
        .fetch_all(c)
        .await?;
    rows.iter().map(slice_from).collect()
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

/// The query of `slivers_of_slice` (`slivers_slice`).
pub(crate) fn slivers_of_slice_query() -> String {
    format!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id WHERE v.slice_id = $1 ORDER BY v.idx"
    )
}

/// A slice's slivers by index.
pub async fn slivers_of_slice(c: &mut Conn, slice_id: &str) -> Result<Vec<Sliver>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(slivers_of_slice_query()))
        .bind(slice_id)
        .fetch_all(c)
        .await?;
    rows.iter().map(sliver_from).collect()
}

/// `slivers_of_slices_query(n)`: the slivers of `n` slices by id (`slivers_slice`), by slice
/// then index.
pub(crate) fn slivers_of_slices_query(n: usize) -> String {
    format!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id \
         WHERE v.slice_id IN ({}) ORDER BY v.slice_id, v.idx",
        placeholders(1, n)
    )
}

/// The slivers of these slices, by slice id then index: one query per `IN_CHUNK` slices.
pub async fn slivers_of_slices(c: &mut Conn, ids: &[String]) -> Result<Vec<Sliver>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(slivers_of_slices_query(chunk.len())));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(&mut *c).await? {
            out.push(sliver_from(&r)?);
        }
    }
    Ok(out)
}

/// The query of `slivers_on_node` (`slivers_node`).
pub(crate) fn slivers_on_node_query() -> String {
    format!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id
         WHERE v.node = $1 AND v.state <> 'deleted' ORDER BY s.name, v.idx"
    )
}

/// A node's slivers that are not yet deleted.
pub async fn slivers_on_node(c: &mut Conn, node: &str) -> Result<Vec<Sliver>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(slivers_on_node_query()))
        .bind(node)
        .fetch_all(c)
        .await?;
    rows.iter().map(sliver_from).collect()
}

/// The query of `get_sliver` (primary key).
pub(crate) fn sliver_query() -> String {
    format!(
        "SELECT {SLIVER_COLS} FROM slivers v JOIN slices s ON s.id = v.slice_id WHERE v.id = $1"
    )
}

/// One sliver.
pub async fn get_sliver(c: &mut Conn, id: &str) -> Result<Option<Sliver>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(sliver_query()))
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

/// A slice by id, whatever its life.
pub async fn slice_by_id(c: &mut Conn, id: &str) -> Result<Option<Slice>> {
    one_slice(c, BY_ID, id).await
}

/// The query of `slices_to_warn` (`slices_live_lease`, like `expired_slices`).
pub(crate) fn slices_to_warn_query() -> String {
    format!(
        "SELECT {SLICE_COLS} FROM slices WHERE life = 'live' AND lease_warned = 0 AND lease_expires_at <= $1"
    )
}

/// Live slices whose lease ends before `horizon` and that have not been warned yet.
pub async fn slices_to_warn(c: &mut Conn, horizon: i64) -> Result<Vec<Slice>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(slices_to_warn_query()))
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

/// Query plans of the store's hot queries (this module's, the event log's and the tokens'),
/// on SQLite and PostgreSQL.
#[cfg(test)]
#[path = "plans.rs"]
mod plans;
