//! Reading the event log forwards, for live watchers (`core::watch`): in id order from a
//! point, in pages, and the same filter applied in memory to events the feed broadcasts.
//! It must never drop an event `list_events` would return for the same filter: `matches`
//! mirrors that query's WHERE clause, and a change to one is a change to the other.

use sqlx::Row;

use super::{Conn, EventFilter};
use crate::error::Result;
use crate::model::Event;

/// Events matching `f` with `f.after_id < id <= upto` (`upto` 0: no bound), oldest first,
/// at most `f.limit`.
pub async fn events_forward(c: &mut Conn, f: &EventFilter, upto: i64) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT id, time, actor, object, action, detail, slice_id FROM events
         WHERE id > $1 AND ($2 = '' OR object = $2) AND ($3 = '' OR slice_id = $3) AND ($4 = '' OR actor = $4)
           AND ($5 = 0 OR id <= $5)
         ORDER BY id LIMIT $6",
    )
    .bind(f.after_id)
    .bind(f.object.clone().unwrap_or_default())
    .bind(f.slice_id.clone().unwrap_or_default())
    .bind(f.actor.clone().unwrap_or_default())
    .bind(upto)
    .bind(f.limit)
    .fetch_all(c)
    .await?;
    rows.iter()
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
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

impl EventFilter {
    /// Whether `e` passes the filter's object, slice and actor conditions (ids and limits are
    /// the caller's business), exactly as `list_events` decides it in SQL.
    pub fn matches(&self, e: &Event) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        }
        ok(&self.object, &e.object) && ok(&self.slice_id, &e.slice_id) && ok(&self.actor, &e.actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(object: &str, slice_id: &str, actor: &str) -> Event {
        Event {
            id: 1,
            time: 0,
            actor: actor.into(),
            object: object.into(),
            action: "a".into(),
            detail: String::new(),
            slice_id: slice_id.into(),
        }
    }

    #[test]
    fn matches_mirrors_the_query() {
        let all = EventFilter::default();
        assert!(all.matches(&ev("node/n1", "", "admin")));
        let slice = EventFilter {
            slice_id: Some("s1".into()),
            ..Default::default()
        };
        assert!(slice.matches(&ev("sliver/v1", "s1", "alice")));
        assert!(!slice.matches(&ev("sliver/v2", "s2", "alice")));
        let mine = EventFilter {
            actor: Some("user/alice".into()),
            ..Default::default()
        };
        assert!(mine.matches(&ev("slice/x", "s1", "user/alice")));
        assert!(!mine.matches(&ev("slice/x", "s1", "user/bob")));
        let node = EventFilter {
            object: Some("node/n1".into()),
            ..Default::default()
        };
        assert!(node.matches(&ev("node/n1", "", "node/n1")));
        assert!(!node.matches(&ev("node/n2", "", "node/n2")));
    }
}
