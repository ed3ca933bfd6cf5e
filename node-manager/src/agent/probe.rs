//! A probe of the engine beside the reconcile worker. A pass finds an engine that is gone
//! (its socket refuses), but a hung engine holds a pass for a whole request timeout. The
//! probe pings it every [`PROBE_EVERY`] with a short timeout and marks it away when it does
//! not answer. It never marks it back: only a pass that lists the containers again does.

use std::time::Duration;

use crate::clock::SharedClock;
use crate::engine_health::EngineWatch;
use crate::runtime::Runtime;

/// Period of the probe.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Runs until cancelled.
pub async fn run<R: Runtime>(runtime: R, engine: EngineWatch, clock: SharedClock) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = runtime.ping().await {
            if engine.lost(e.to_string(), clock.now()) {
                tracing::error!(error = %e, "container engine does not answer");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::clock::TokioClock;
    use crate::runtime::fake::FakeRuntime;

    #[tokio::test(start_paused = true)]
    async fn a_silent_engine_is_marked_away_within_one_probe_and_never_marked_back() {
        let rt = FakeRuntime::new("n1");
        let engine = EngineWatch::default();
        let clock = Arc::new(TokioClock::starting_at(UNIX_EPOCH));
        let probe = tokio::spawn(run(rt.clone(), engine.clone(), clock));
        tokio::time::sleep(PROBE_EVERY * 2).await;
        assert!(!engine.is_down());
        rt.set_down(true);
        tokio::time::sleep(PROBE_EVERY + Duration::from_millis(1)).await;
        assert!(engine.is_down());
        rt.set_down(false);
        tokio::time::sleep(PROBE_EVERY * 2).await;
        assert!(
            engine.is_down(),
            "only a reconcile pass says the engine is back"
        );
        probe.abort();
    }
}
