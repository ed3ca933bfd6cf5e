//! Wall-clock time as an injected dependency, so that lease expiry can be tested with tokio's
//! paused time instead of real waits. Production uses [`SystemClock`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

/// A source of wall-clock time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock. Leases are wall-clock instants set by the service, so the node
/// compares them with its own wall clock (kept in sync by NTP), not with a monotonic clock
/// that would stand still while the host sleeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that advances with tokio's clock: `start` at creation, then as much as
/// `tokio::time::Instant` moved (which `tokio::time::pause` and `advance` control in tests).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: SystemTime,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `start` now.
    pub fn starting_at(start: SystemTime) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.origin.elapsed()
    }
}
