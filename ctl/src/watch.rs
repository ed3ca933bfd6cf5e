//! Following the event log with WatchEvents: the service replays the events after a given id,
//! then pushes new ones as they are written.
//!
//! If the stream breaks, it is reopened once from the last event seen, so nothing is lost or
//! printed twice; if the reopened stream fails before delivering anything, the break is reported.
//! This module never polls: callers that must make progress without the stream (`--wait`) keep
//! their own slow timer, see [`wake`].

use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::FutureExt as _;
use slicebed_proto::v1::{
    self as pb, slice_service_client::SliceServiceClient, WatchEventsRequest,
};
use tonic::{Code, Status, Streaming};

use crate::client::{Authed, Clients};

/// Pause before reopening a broken stream, so a restarting service has a moment to come back.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// One WatchEvents call, reopened once after a break.
pub struct EventWatch {
    client: SliceServiceClient<Authed>,
    object: String,
    /// Id of the last event delivered; the reopened stream starts after it.
    last_id: i64,
    /// None after a break, until it is reopened.
    stream: Option<Streaming<pb::Event>>,
    /// The current stream is a reopened one that has not delivered an event yet: another break
    /// now means the service cannot keep a stream up, and retrying would only spin.
    reopened: bool,
}

impl EventWatch {
    /// Opens the stream for `object` ("" for everything visible), replaying events after
    /// `after_id` (0: only new events).
    pub async fn open(c: &Clients, object: &str, after_id: i64) -> Result<Self> {
        let mut w = EventWatch {
            client: c.watch.clone(),
            object: object.to_string(),
            last_id: after_id,
            stream: None,
            reopened: false,
        };
        let stream = w.call().await.context("cannot watch events")?;
        w.stream = Some(stream);
        Ok(w)
    }

    async fn call(&mut self) -> Result<Streaming<pb::Event>, Status> {
        let req = WatchEventsRequest {
            object: self.object.clone(),
            after_id: self.last_id,
        };
        Ok(self.client.watch_events(req).await?.into_inner())
    }

    /// The next event. Cancel-safe: state changes only after each await completes, so it can sit
    /// in a `select!` next to a timer.
    pub async fn next(&mut self) -> Result<pb::Event> {
        loop {
            if self.stream.is_none() {
                tokio::time::sleep(REOPEN_DELAY).await;
                let stream = self
                    .call()
                    .await
                    .context("the event stream broke and could not be reopened")?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("opened above");
            let failure = match stream.message().await {
                Ok(Some(e)) => {
                    self.last_id = self.last_id.max(e.id);
                    self.reopened = false;
                    return Ok(e);
                }
                Ok(None) => Status::unavailable("the service closed the event stream"),
                Err(status) => status,
            };
            self.stream = None;
            if self.reopened || !transient(&failure) {
                return Err(anyhow::Error::new(failure).context("the event stream broke"));
            }
            self.reopened = true;
        }
    }
}

/// Failures worth one more try; a refusal (bad token, no such object, old service) is final.
fn transient(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::FailedPrecondition
    )
}

/// Returns when a `relevant` event arrives (after swallowing any that are already queued, so a
/// burst causes one re-read) or after `nap`, whichever is first. A watch that fails is dropped
/// and the timer carries on alone: waiting degrades to slow polling instead of failing.
pub async fn wake(
    watch: &mut Option<EventWatch>,
    nap: Duration,
    relevant: impl Fn(&pb::Event) -> bool,
) {
    let timer = tokio::time::sleep(nap);
    tokio::pin!(timer);
    loop {
        let Some(w) = watch.as_mut() else {
            timer.await;
            return;
        };
        let got = tokio::select! {
            r = w.next() => Some(r),
            _ = &mut timer => None,
        };
        match got {
            None => return,
            Some(Err(_)) => *watch = None,
            Some(Ok(e)) if relevant(&e) => {
                while let Some(r) = w.next().now_or_never() {
                    if r.is_err() {
                        *watch = None;
                        break;
                    }
                }
                return;
            }
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final() {
        assert!(transient(&Status::unavailable("connection reset")));
        assert!(transient(&Status::internal("h2 protocol error")));
        assert!(!transient(&Status::permission_denied("not yours")));
        assert!(!transient(&Status::unimplemented("old service")));
    }
}
