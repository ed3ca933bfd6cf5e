//! Live events for `WatchEvents`: one feed per service reads what commits appended and
//! broadcasts it; every watch filters that broadcast in memory.
//!
//! The feed wakes on the store's commit bell (plus a slow safety tick), never on a timer per
//! watcher, so idle watchers cost no database work at all. A watch that starts behind, or
//! falls behind because its client reads slowly, catches up from the database in pages of
//! its own filter and then rejoins the broadcast; it never loses an event and never holds up
//! the feed or other watchers. What a watch may see is decided by the same `event_filter`
//! as `ListEvents`, and visibility is checked again before each delivery, as the per-watch
//! poll this replaces did. This module must never deliver an event `ListEvents` would not
//! show the same caller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, OnceCell};

use super::Core;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::Event;
use crate::store::{self, Db, EventFilter};

/// Rows read per database query, by the feed and by a catching-up watch.
const PAGE: i64 = 500;
/// Events the broadcast keeps for watchers that are behind; past that a watcher catches up
/// from the database instead.
const BACKLOG: usize = 4096;
/// How often the feed looks even without a commit bell (a safety net, not the mechanism).
const SAFETY_TICK: Duration = Duration::from_secs(1);
/// On PostgreSQL ids are taken at insert and may commit out of order, so a gap in ids may be
/// a transaction still committing. The feed waits this long for it before moving past.
const GAP_GRACE: Duration = Duration::from_secs(2);
/// Events queued towards one client before its watch stops reading the broadcast.
const CLIENT_QUEUE: usize = 256;

/// The service's one event feed.
#[derive(Debug, Default)]
pub struct Feed {
    shared: OnceCell<Arc<Shared>>,
}

#[derive(Debug)]
struct Shared {
    /// The newest id broadcast, and the sender: changed together under the lock, so that a
    /// new watcher's subscription and starting point agree.
    state: Mutex<(i64, broadcast::Sender<Arc<Event>>)>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, broadcast::Sender<Arc<Event>>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of every event after the returned id.
    fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, i64) {
        let g = self.lock();
        (g.1.subscribe(), g.0)
    }

    fn last(&self) -> i64 {
        self.lock().0
    }
}

impl Feed {
    /// Starts the feed task on first use.
    async fn shared(&self, db: &Db) -> Result<Arc<Shared>> {
        self.shared
            .get_or_try_init(|| async {
                let last = store::max_event_id(&mut *db.conn().await?).await?;
                let shared = Arc::new(Shared {
                    state: Mutex::new((last, broadcast::channel(BACKLOG).0)),
                });
                tokio::spawn(run_feed(db.clone(), Arc::downgrade(&shared)));
                Ok(shared)
            })
            .await
            .cloned()
    }
}

/// Reads appended events in id order and broadcasts them, until the core is dropped.
async fn run_feed(db: Db, shared: std::sync::Weak<Shared>) {
    let mut commits = db.commits();
    let mut gap_since: Option<Instant> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let mut waiting = false;
        loop {
            let last = s.last();
            let f = EventFilter {
                after_id: last,
                limit: PAGE,
                ..Default::default()
            };
            let page = match db.conn().await {
                Ok(mut c) => store::events_forward(&mut c, &f, 0).await,
                Err(e) => Err(e),
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "event feed: reading new events failed");
                    break;
                }
            };
            let full = page.len() as i64 == PAGE;
            let mut next = last + 1;
            for e in page {
                if e.id != next {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < GAP_GRACE {
                        waiting = true;
                        break;
                    }
                    tracing::debug!(from = next, to = e.id, "event feed: moving past an id gap");
                }
                gap_since = None;
                next = e.id + 1;
                let mut g = s.lock();
                g.0 = e.id;
                // No receivers is fine: nobody is watching.
                let _ = g.1.send(Arc::new(e));
            }
            if waiting || !full {
                break;
            }
        }
        drop(s);
        let tick = if waiting {
            Duration::from_millis(100)
        } else {
            SAFETY_TICK
        };
        tokio::select! {
            r = commits.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

impl Core {
    /// Events the caller may see, from after `after_id` (0: from now) for as long as the
    /// receiver is held. Visibility is checked now, so a refusal is an error of the call.
    pub async fn watch_events(
        self: &Arc<Self>,
        p: &Principal,
        object: &str,
        after_id: i64,
    ) -> Result<mpsc::Receiver<Result<Event>>> {
        let filter = {
            let mut c = self.db.conn().await?;
            self.event_filter(&mut c, p, object).await?
        };
        let shared = self.feed.shared(&self.db).await?;
        let (live, last) = shared.subscribe();
        let after = if after_id > 0 { after_id } else { last };
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let w = Watch {
            core: self.clone(),
            p: p.clone(),
            object: object.to_string(),
            filter,
            after,
            tx,
        };
        tokio::spawn(w.run(shared, live, last));
        Ok(rx)
    }
}

/// One watcher's state.
struct Watch {
    core: Arc<Core>,
    p: Principal,
    object: String,
    filter: EventFilter,
    /// Everything up to this id has been delivered or did not match.
    after: i64,
    tx: mpsc::Sender<Result<Event>>,
}

/// Why a watch ends.
struct Gone;

impl Watch {
    async fn run(
        mut self,
        shared: Arc<Shared>,
        mut live: broadcast::Receiver<Arc<Event>>,
        mut upto: i64,
    ) {
        loop {
            if self.catch_up(upto).await.is_err() {
                return;
            }
            let first = tokio::select! {
                r = live.recv() => r,
                _ = self.tx.closed() => return,
            };
            let mut batch = Vec::new();
            match first {
                Ok(e) => batch.push(e),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the broadcast: what it dropped is in the database.
                    upto = shared.last();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            // Take what else is already there, so one visibility check covers the batch.
            let mut lagged = false;
            while batch.len() < PAGE as usize {
                match live.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        lagged = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if self.deliver(&batch).await.is_err() {
                return;
            }
            if lagged {
                upto = shared.last();
            }
        }
    }

    /// Delivers matching events of the broadcast batch newer than what was delivered.
    async fn deliver(&mut self, batch: &[Arc<Event>]) -> Result<(), Gone> {
        let after = self.after;
        let wanted: Vec<&Arc<Event>> = batch
            .iter()
            .filter(|e| e.id > after && self.filter.matches(e))
            .collect();
        if !wanted.is_empty() {
            self.still_visible().await?;
            for e in wanted {
                self.send(Event::clone(e)).await?;
            }
        }
        let newest = batch.iter().map(|e| e.id).max().unwrap_or(after);
        self.after = after.max(newest);
        Ok(())
    }

    /// Delivers matching events up to `upto` from the database, a page at a time.
    async fn catch_up(&mut self, upto: i64) -> Result<(), Gone> {
        let mut checked = false;
        while self.after < upto {
            let f = EventFilter {
                after_id: self.after,
                limit: PAGE,
                ..self.filter.clone()
            };
            let page = match self.core.db.conn().await {
                Ok(mut c) => store::events_forward(&mut c, &f, upto).await,
                Err(e) => Err(e),
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => return self.fail(e).await,
            };
            if !page.is_empty() && !checked {
                self.still_visible().await?;
                checked = true;
            }
            let done = (page.len() as i64) < PAGE;
            for e in page {
                self.after = e.id;
                self.send(e).await?;
            }
            if done {
                self.after = upto;
            }
        }
        Ok(())
    }

    /// The caller may still read these events (a slice's membership may have changed).
    async fn still_visible(&self) -> Result<(), Gone> {
        let check = async {
            let mut c = self.core.db.conn().await?;
            self.core.event_filter(&mut c, &self.p, &self.object).await
        };
        match check.await {
            Ok(_) => Ok(()),
            Err(e) => self.fail(e).await,
        }
    }

    async fn send(&self, e: Event) -> Result<(), Gone> {
        self.tx.send(Ok(e)).await.map_err(|_| Gone)
    }

    async fn fail<T>(&self, e: crate::error::Error) -> Result<T, Gone> {
        let _ = self.tx.send(Err(e)).await;
        Err(Gone)
    }
}
