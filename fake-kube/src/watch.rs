//! Watches: `?watch=1` streams JSON lines (ADDED / MODIFIED / DELETED / BOOKMARK / ERROR) from a
//! resourceVersion, replaying the store's history and then following live changes.
//!
//! A version older than the history holds gets an ERROR event carrying a 410 `Status` ("too old
//! resource version"), as a real API server's watch cache answers; so does a watch that fell
//! too far behind. A watch never reports a change twice or skips one between its start and its end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::kinds::Kind;
use crate::meta;
use crate::selector::Selector;
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::{Change, EventType};

/// What one watch request asked for.
pub struct WatchRequest {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub selector: Selector,
    pub resource_version: Option<u64>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(kind: &Kind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

/// Starts the watch; the returned channel yields the response body's lines and ends with it.
pub fn start(shared: Arc<Shared>, req: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    let mut closing = shared.closing.subscribe();
    let mut first: Vec<Bytes> = vec![];
    let start = {
        let store = shared.store.lock().expect("store lock");
        let from = match req.resource_version {
            Some(rv) if rv > 0 && !req.send_initial_events => rv,
            _ => {
                let ns = req.namespace.as_deref();
                for obj in store.list(req.kind, ns).filter(|o| req.selector.matches(o)) {
                    first.push(line("ADDED", obj));
                }
                if req.send_initial_events {
                    first.push(bookmark(req.kind, store.current_rv(), true));
                }
                store.current_rv()
            }
        };
        match store.changes_since(from) {
            Some((past, live)) => Some((from, past, live)),
            None => {
                let e = ApiError::gone(format!(
                    "too old resource version: {from} ({})",
                    store.oldest_valid()
                ));
                first.push(line("ERROR", &e.to_status()));
                None
            }
        }
    };
    let interval = shared.timings.bookmark_interval;
    tokio::spawn(async move {
        for l in first {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let Some((mut last_rv, past, mut live)) = start else {
            return;
        };
        for c in past {
            last_rv = c.rv;
            if let Some(l) = render(&req, &c) {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(req.timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let out = tokio::select! {
                _ = &mut deadline => return,
                _ = closing.changed() => return,
                _ = ticker.tick(), if req.bookmarks => Some(bookmark(req.kind, last_rv, false)),
                c = live.recv() => match c {
                    Ok(c) if c.rv <= last_rv => None,
                    Ok(c) => {
                        last_rv = c.rv;
                        render(&req, &c)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone(format!("too old resource version: {last_rv}"));
                        let _ = tx.send(line("ERROR", &e.to_status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(l) = out {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The line a change becomes for this watch, if any: filtered by kind, namespace and selectors,
/// with a MODIFIED that leaves (enters) the selection sent as DELETED (ADDED).
fn render(req: &WatchRequest, c: &Change) -> Option<Bytes> {
    if c.kind.plural != req.kind.plural
        || req.namespace.as_deref().is_some_and(|ns| ns != c.namespace)
    {
        return None;
    }
    let now = req.selector.matches(&c.object);
    let before = c.old.as_ref().is_some_and(|o| req.selector.matches(o));
    let kind = match (c.event, before, now) {
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Added, _, true) => "ADDED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    debug_assert!(!meta::rv(&c.object).is_empty());
    Some(line(kind, &c.object))
}
