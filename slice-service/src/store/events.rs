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

/// Reads events.
pub async fn list_events(c: &mut Conn, f: &EventFilter) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT id, time, actor, object, action, detail, slice_id FROM events
         WHERE id > $1 AND ($2 = '' OR object = $2) AND ($3 = '' OR slice_id = $3) AND ($4 = '' OR actor = $4)
           AND ($5 = 0 OR id < $5)
         ORDER BY id DESC LIMIT $6",
    )
    .bind(f.after_id)
    .bind(f.object.clone().unwrap_or_default())
    .bind(f.slice_id.clone().unwrap_or_default())
    .bind(f.actor.clone().unwrap_or_default())
    .bind(f.before_id)
    .bind(f.limit)
    .fetch_all(c)
    .await?;
    let mut out: Vec<Event> = rows
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
