//! Closed-loop load: W workers, each calling one operation after the other until a deadline,
//! an optional shared count, or the work runs out; latencies of the successful calls.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..1) of the successful calls' latency.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
    }

    /// "p50 1.2 ms, p99 3.4 ms".
    pub fn percentiles(&self) -> String {
        format!(
            "p50 {}, p99 {}",
            ms(self.quantile(0.50)),
            ms(self.quantile(0.99))
        )
    }

    /// ", 3 errors (first: ...)" or "".
    pub fn error_note(&self) -> String {
        match &self.first_error {
            Some(e) => format!(", {} errors (first: {e})", self.errors),
            None => String::new(),
        }
    }
}

/// A duration in ms with a sensible number of digits.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Runs `op(worker, seq)` in `workers` loops until `duration` has passed, `count` calls have
/// succeeded in all (if given), or an `op` returns `Ok(false)` (nothing left for it to do).
pub async fn closed_loop<F, Fut>(
    workers: usize,
    duration: Duration,
    count: Option<u64>,
    op: F,
) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, tonic::Status>> + Send + 'static,
{
    let op = Arc::new(op);
    let left = Arc::new(AtomicI64::new(count.map_or(i64::MAX, |c| c as i64)));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let op = op.clone();
            let left = left.clone();
            tokio::spawn(async move {
                let mut out = Outcome::default();
                let mut seq = 0;
                while Instant::now() < deadline && left.fetch_sub(1, Relaxed) > 0 {
                    let t = Instant::now();
                    match op(w, seq).await {
                        Ok(true) => {
                            out.ok += 1;
                            out.latencies.push(t.elapsed());
                        }
                        Ok(false) => break,
                        Err(s) => {
                            left.fetch_add(1, Relaxed);
                            out.errors += 1;
                            if out.first_error.is_none() {
                                out.first_error = Some(format!("{:?}: {}", s.code(), s.message()));
                            }
                            // A refusal comes back at once; do not spin on it.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    seq += 1;
                }
                out
            })
        })
        .collect();
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await.expect("load worker");
        all.ok += o.ok;
        all.errors += o.errors;
        all.first_error = all.first_error.or(o.first_error);
        all.latencies.extend(o.latencies);
    }
    all.elapsed = start.elapsed();
    all.latencies.sort();
    all
}
