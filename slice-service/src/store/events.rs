//! The append-only event log.

use sqlx::Row;

use super::Conn;
use crate::error::Result;
use crate::model::{now_ms, Event, NewEvent};

/// Appends one event; call inside the transaction of the change it records.
pub async fn append_event(c: &mut Conn, e: &NewEvent) -> Result<()> {
    sqlx::query("INSERT INTO events (time, actor, object, action, detail, slice) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(now_ms())
        .bind(&e.actor)
        .bind(&e.object)
        .bind(&e.action)
        .bind(&e.detail)
        .bind(&e.slice)
        .execute(c)
        .await?;
    Ok(())
}

/// Which events to read.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Exact object, e.g. "node/n1".
    pub object: Option<String>,
    /// Everything about a slice, its slivers included.
    pub slice: Option<String>,
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only ids above this.
    pub after_id: i64,
    /// At most this many (newest ones, returned oldest first).
    pub limit: i64,
}

/// Reads events.
pub async fn list_events(c: &mut Conn, f: &EventFilter) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT id, time, actor, object, action, detail FROM events
         WHERE id > $1 AND ($2 = '' OR object = $2) AND ($3 = '' OR slice = $3) AND ($4 = '' OR actor = $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(f.after_id)
    .bind(f.object.clone().unwrap_or_default())
    .bind(f.slice.clone().unwrap_or_default())
    .bind(f.actor.clone().unwrap_or_default())
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
