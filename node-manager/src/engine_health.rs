//! Whether the container engine answers, as the agent last saw it. Soft state shared by the
//! reconcile worker, which finds out (a pass cannot list containers), and the control
//! session, which tells the service (in `Hello` and in a heartbeat sent at once on change).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// The engine stopped answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDown {
    /// The first error seen, in the transport's words.
    pub message: String,
    /// When it was first seen.
    pub since: SystemTime,
}

/// `None` while the engine answers.
pub type EngineHealth = Option<EngineDown>;

/// The agent's view of its engine; clones share it.
#[derive(Debug, Clone)]
pub struct EngineWatch {
    tx: Arc<watch::Sender<EngineHealth>>,
}

impl Default for EngineWatch {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(None).0),
        }
    }
}

impl EngineWatch {
    /// The engine did not answer at `now`. Returns true if it answered until now (the first
    /// failure of an outage); later failures keep the first message and time.
    pub fn lost(&self, message: impl Into<String>, now: SystemTime) -> bool {
        let message = message.into();
        self.tx.send_if_modified(|h| match h {
            Some(_) => false,
            None => {
                *h = Some(EngineDown {
                    message,
                    since: now,
                });
                true
            }
        })
    }

    /// The engine answered at `now`. Returns how long it was away if it was.
    pub fn back(&self, now: SystemTime) -> Option<Duration> {
        let mut away = None;
        self.tx.send_if_modified(|h| match h.take() {
            Some(d) => {
                away = Some(now.duration_since(d.since).unwrap_or_default());
                true
            }
            None => false,
        });
        away
    }

    /// The current view.
    pub fn current(&self) -> EngineHealth {
        self.tx.borrow().clone()
    }

    /// Whether the engine is away.
    pub fn is_down(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<EngineHealth> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_keeps_its_first_cause_and_reports_its_length() {
        let w = EngineWatch::default();
        let mut rx = w.subscribe();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert!(w.lost("connection refused", t0));
        assert!(!w.lost("socket not found", t0 + Duration::from_secs(1)));
        assert!(rx.has_changed().unwrap());
        let down = rx.borrow_and_update().clone().unwrap();
        assert_eq!(down.message, "connection refused");
        assert_eq!(down.since, t0);
        assert_eq!(
            w.back(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(w.back(t0 + Duration::from_secs(8)), None);
        assert!(!w.is_down());
    }
}
