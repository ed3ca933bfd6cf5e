//! Time as an injected dependency of the core and the hub, so that leases, grace periods, drain
//! deadlines and node liveness can be tested by moving a clock instead of waiting.
//!
//! Production uses [`SystemClock`]. Nothing here may sleep or spawn: a clock only answers
//! "what time is it".

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Millis;

/// A source of time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Wall-clock time in epoch milliseconds: what is stored (leases, deadlines, heartbeats).
    fn now_ms(&self) -> Millis;
    /// Monotonic time: the soft state's liveness (when a node was last heard from).
    fn instant(&self) -> Instant;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        crate::model::now_ms()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until told to move (tests): both of its times start at the
/// system's and advance together, only through [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    start_ms: Millis,
    origin: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock reading the system's time now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start_ms: crate::model::now_ms(),
            origin: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.start_ms
            .saturating_add(self.offset().as_millis() as Millis)
    }
    fn instant(&self) -> Instant {
        self.origin + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        let (ms, at) = (c.now_ms(), c.instant());
        assert_eq!((c.now_ms(), c.instant()), (ms, at));
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now_ms(), ms + 90_000);
        assert_eq!(c.instant() - at, Duration::from_secs(90));
    }
}
