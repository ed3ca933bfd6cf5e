//! Reconnect delays: exponential with full jitter (a random delay between zero and the
//! current cap), so nodes cut off together do not all return in the same instant.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 200 ms doubling to 10 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Starts at `base`, doubles per attempt, caps at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The cap of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max)
    }

    /// The next delay: uniform in `[0, ceiling]`; raises the ceiling for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        rand::thread_rng().gen_range(Duration::ZERO..=cap)
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Lowers (or restores) the cap, never below `base` nor above the default 10 s. The agent
    /// caps it at the heartbeat interval, so a node rejoins within one heartbeat of a heal.
    pub fn cap_at(&mut self, max: Duration) {
        self.max = max.clamp(self.base, Duration::from_secs(10));
    }

    /// After a successful connection: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_at_bounds_every_delay() {
        let mut b = Backoff::default();
        b.cap_at(Duration::from_secs(1));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        b.cap_at(Duration::from_secs(3600));
        assert_eq!(b.ceiling(), Duration::from_secs(10));
    }

    #[test]
    fn doubles_caps_jitters_and_resets() {
        let mut b = Backoff::default();
        let caps: Vec<u128> = (0..8)
            .map(|_| {
                let cap = b.ceiling();
                assert!(b.next_delay() <= cap);
                cap.as_millis()
            })
            .collect();
        assert_eq!(caps, vec![200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(200));
    }
}
