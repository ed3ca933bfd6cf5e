//! The caller's live events (`GET /api/events`): newline-delimited JSON over one long HTTP
//! response, read by the page with `fetch()` and a stream reader (an `EventSource` cannot send
//! the Authorization header).
//!
//! Events come from the core's one feed (`core/watch.rs`), through the same filters as
//! `WatchEvents`: what the caller did (everything, for an admin) and the history of each
//! slice on their page, so a sliver a node reports `failed` shows up here. One page's stream
//! holds one of the user's watch slots (`limits.rs`), ends when the token is revoked or
//! expires, and ends after `MAX_LIFE` (the page reconnects with `after=` the last id it saw, so
//! nothing is lost). It must never deliver an event `ListEvents` would not show the caller.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::auth::{self, Caller};
use super::reply::{self, Body};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::limits::{StreamKind, StreamLimits};
use crate::model::{Event, Role};

/// Slices of the page watched one by one (a non-admin's; an admin's one watch sees all).
const MAX_SLICES: usize = super::mine::SHOWN;
/// A blank line this often shows the page (and any proxy) that the stream is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this; the page reconnects from the last id it saw.
const MAX_LIFE: Duration = Duration::from_secs(600);
/// Ids remembered to drop an event two watches both deliver.
const SEEN: usize = 4096;

/// One event as the page reads it.
fn line(e: &Event) -> Bytes {
    let v = serde_json::json!({
        "id": e.id,
        "time": e.time,
        "actor": e.actor,
        "object": e.object,
        "action": e.action,
        "detail": e.detail,
    });
    Bytes::from(format!("{v}\n"))
}

/// The last line of a stream: why it ends, and whether the token is no longer good (the page
/// then forgets it; otherwise it reconnects).
fn end_line(reason: &str, signed_out: bool) -> Bytes {
    let v = serde_json::json!({ "end": reason, "signed_out": signed_out });
    Bytes::from(format!("{v}\n"))
}

/// Opens the stream for `who`, from after event `after` (0: from now).
pub async fn open(
    core: &Arc<Core>,
    limits: &StreamLimits,
    who: Caller,
    after: i64,
) -> Result<Response<Body>> {
    let user = who.principal.user()?.clone();
    let slot = limits.reserve(&user.name, StreamKind::Watch)?;
    let mut objects = vec![String::new()];
    if user.role != Role::Admin {
        let page = core
            .list_slices(&who.principal, false, "", None, MAX_SLICES)
            .await?;
        objects.extend(page.views.iter().map(|v| format!("slice/{}", v.slice.name)));
    }
    let mut watches = Vec::new();
    for o in &objects {
        match core.watch_events(&who.principal, o, after).await {
            Ok(rx) => watches.push(tokio_stream::wrappers::ReceiverStream::new(rx)),
            // A slice deleted since it was listed: its end was an event of its own.
            Err(Error::NotFound { .. }) if !o.is_empty() => {}
            Err(e) => return Err(e),
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let fails = auth::token_fails(core.clone(), who.secret, who.token);
    tokio::spawn(async move {
        let _slot = slot;
        let mut merged = futures::stream::select_all(watches);
        let mut seen = BTreeSet::new();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let life = tokio::time::sleep(MAX_LIFE);
        tokio::pin!(fails, life);
        loop {
            let out = tokio::select! {
                item = merged.next() => match item {
                    Some(Ok(e)) => {
                        if !seen.insert(e.id) {
                            continue;
                        }
                        if seen.len() > SEEN {
                            seen.pop_first();
                        }
                        line(&e)
                    }
                    // A slice the caller may no longer see: that watch ends, the others go on.
                    Some(Err(Error::NotFound { .. } | Error::Denied(_))) => continue,
                    Some(Err(e)) => {
                        let _ = tx.send(end_line(&e.to_string(), false)).await;
                        return;
                    }
                    None => return,
                },
                e = &mut fails => {
                    let _ = tx.send(end_line(&e.to_string(), true)).await;
                    return;
                }
                _ = keepalive.tick() => Bytes::from_static(b"\n"),
                _ = &mut life => return,
                _ = tx.closed() => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    Ok(reply::private(reply::with(
        StatusCode::OK,
        "application/x-ndjson; charset=utf-8",
        body.boxed_unsync(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_lines_that_carry_untrusted_text_as_data() {
        let e = Event {
            id: 7,
            time: 1,
            actor: "node/n1".into(),
            object: "sliver/x".into(),
            action: "failed".into(),
            detail: "</script>\n<b>".into(),
            slice_id: "s".into(),
        };
        let b = line(&e);
        let text = std::str::from_utf8(&b).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["detail"], "</script>\n<b>");
        assert_eq!(v["id"], 7);
        assert!(v.get("slice_id").is_none());
    }
}
