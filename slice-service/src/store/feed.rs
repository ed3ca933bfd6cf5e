//! Reading the event log forwards, for live watchers (`core::watch`): in id order from a
//! point, in pages, and the same filter applied in memory to events the feed broadcasts.
//! It must never drop an event `list_events` would return for the same filter: both read
//! through `events::events_query`, and `matches` mirrors its WHERE clause: a change to one is
//! a change to the other.

use super::events::Walk;
use super::{Conn, EventFilter};
use crate::error::Result;
use crate::model::Event;

/// Events matching `f` with `f.after_id < id <= upto` (`upto` 0: no bound), oldest first,
/// at most `f.limit`.
pub async fn events_forward(c: &mut Conn, f: &EventFilter, upto: i64) -> Result<Vec<Event>> {
    super::events::read_events(c, f, Walk::Forward, upto).await
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
