//! The idle rule of a session: it ends when no byte moved either way for its limit. Both
//! directions touch one shared clock; `expired` resolves once the limit passed since the last
//! touch. Uses tokio's clock so tests can pause time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// Idle limit when the service names none.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

/// The limit of an `OpenSession`: unset, zero or negative means the default.
pub fn limit_from(d: Option<prost_types::Duration>) -> Duration {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_IDLE)
}

/// Last activity of one session.
#[derive(Debug)]
pub struct Idle {
    origin: Instant,
    /// Milliseconds after `origin` of the last byte moved.
    last_ms: AtomicU64,
    limit: Duration,
}

impl Idle {
    /// Starts the clock now.
    pub fn new(limit: Duration) -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            limit,
        }
    }

    /// Bytes moved: the session is not idle.
    pub fn touch(&self) {
        let ms = self
            .origin
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Resolves once nothing moved for the limit.
    pub async fn expired(&self) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.origin + last + self.limit;
            if Instant::now() >= deadline {
                return;
            }
            sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn unset_or_zero_limit_is_thirty_minutes() {
        assert_eq!(limit_from(None), DEFAULT_IDLE);
        let zero = prost_types::Duration {
            seconds: 0,
            nanos: 0,
        };
        assert_eq!(limit_from(Some(zero)), DEFAULT_IDLE);
        let neg = prost_types::Duration {
            seconds: -5,
            nanos: 0,
        };
        assert_eq!(limit_from(Some(neg)), DEFAULT_IDLE);
        let five = prost_types::Duration {
            seconds: 5,
            nanos: 0,
        };
        assert_eq!(limit_from(Some(five)), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_full_quiet_limit() {
        let idle = Idle::new(Duration::from_secs(10));
        let mut expired = Box::pin(idle.expired());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!((&mut expired).now_or_never().is_none());
        idle.touch();
        // 6 s + 9 s: 15 s after the start but only 9 s after the touch.
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!((&mut expired).now_or_never().is_none());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(expired.now_or_never().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_expires_at_the_limit() {
        let idle = Idle::new(Duration::from_secs(30));
        let start = Instant::now();
        idle.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
