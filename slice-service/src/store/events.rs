//! The append-only event log.
//!
//! What is written is made safe here, once, whoever the caller: text escaped and bounded
//! (`untrusted`), so neither a terminal escape nor a megabyte argv reaches the table.

use sqlx::Row;

use super::Conn;
use crate::error::Result;
use crate::model::{now_ms, Event, NewEvent};
use crate::untrusted::{bounded, DETAIL_MAX, LABEL_MAX};

/// Appends one event; call inside the transaction of the change it records.
pub async fn append_event(c: &mut Conn, e: &NewEvent) -> Result<()> {
    sqlx::query("INSERT INTO events (time, actor, object, action, detail, slice, slice_id) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(now_ms())
        .bind(bounded(&e.actor, LABEL_MAX))
        .bind(bounded(&e.object, LABEL_MAX))
        .bind(bounded(&e.action, LABEL_MAX))
        .bind(bounded(&e.detail, DETAIL_MAX))
        .bind(&e.slice)
        .bind(&e.slice_id)
        .execute(c)
        .await?;
    Ok(())
}

/// Which events to read.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Exact object, e.g. "node/n1".
    pub object: Option<String>,
    /// Everything about one slice, by id (never by name: names are reused), slivers included.
    pub slice_id: Option<String>,
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only ids above this.
    pub after_id: i64,
    /// Only ids below this (0: no bound).
    pub before_id: i64,
    /// At most this many (newest ones, returned oldest first).
    pub limit: i64,
}

/// The columns every event read returns.
const EVENT_COLS: &str = "id, time, actor, object, action, detail, slice_id";

/// Which way a read walks the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Newest first, ids strictly between the bounds (`list_events`).
    Back,
    /// Oldest first, ids above the lower bound up to the upper one included (`events_forward`).
    Forward,
}

/// The query reading events that match `f`, and its arguments: `$1` the lower id bound, `$2`
/// the upper one, then one equality per set field (object, slice id, actor), then the limit.
/// Only set fields become conditions, so each read is one range of one index (`events_object`,
/// `events_slice_id`, `events_actor`, or the primary key), never a scan of the log with the
/// filter evaluated per row. `feed::matches` decides the same in memory.
pub(crate) fn events_query(f: &EventFilter, walk: Walk) -> (String, Vec<String>) {
    let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE id > $1 AND ");
    sql.push_str(match walk {
        Walk::Back => "id < $2",
        Walk::Forward => "id <= $2",
    });
    let mut args = Vec::new();
    for (column, value) in [
        ("object", &f.object),
        ("slice_id", &f.slice_id),
        ("actor", &f.actor),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            args.push(v.to_string());
            sql.push_str(&format!(" AND {column} = ${}", args.len() + 2));
        }
    }
    sql.push_str(match walk {
        Walk::Back => " ORDER BY id DESC",
        Walk::Forward => " ORDER BY id",
    });
    sql.push_str(&format!(" LIMIT ${}", args.len() + 3));
    (sql, args)
}

/// Runs an `events_query` with its id bounds (`upper` 0: none) and limit.
pub(super) async fn read_events(
    c: &mut Conn,
    f: &EventFilter,
    walk: Walk,
    upper: i64,
) -> Result<Vec<Event>> {
    let (text, args) = events_query(f, walk);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(f.after_id)
        .bind(if upper <= 0 { i64::MAX } else { upper });
    for a in args {
        q = q.bind(a);
    }
    let rows = q.bind(f.limit).fetch_all(c).await?;
    let out = rows
        .iter()
        .map(|r| {
            Ok(Event {
                id: r.try_get("id")?,
                time: r.try_get("time")?,
                actor: r.try_get("actor")?,
                object: r.try_get("object")?,
                action: r.try_get("action")?,
                detail: r.try_get("detail")?,
                slice_id: r.try_get("slice_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(out)
}

/// Reads events: the newest `f.limit` matching ones, returned oldest first.
pub async fn list_events(c: &mut Conn, f: &EventFilter) -> Result<Vec<Event>> {
    let mut out = read_events(c, f, Walk::Back, f.before_id).await?;
    out.reverse();
    Ok(out)
}

/// The id of the newest event (0 when there is none).
pub async fn max_event_id(c: &mut Conn) -> Result<i64> {
    let r = sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM events")
        .fetch_one(c)
        .await?;
    Ok(r.try_get("m")?)
}
