//! Waiting for a slice to come up: re-reads GetSlice whenever WatchEvents reports something about
//! the slice (and every 2 s regardless, in case the stream is unavailable) until every sliver
//! runs, one fails, or time runs out, showing one progress line per sliver. Spinners only on a terminal; plain lines otherwise;
//! nothing at all for JSON output, whose stdout must stay parseable.

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use slicebed_proto::v1::{self as pb, GetSliceRequest};

use crate::{
    client::Clients,
    output::view::sliver_state,
    quantity::format_duration,
    watch::{self, EventWatch},
};

/// How often GetSlice is read when no event arrives. Events make waiting prompt; this timer only
/// makes it certain, when the stream is down or the service is older than WatchEvents.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Where a slice stands.
#[derive(Debug, PartialEq)]
pub enum Outcome<'a> {
    /// Every sliver runs (or ended successfully).
    Ready,
    /// This sliver failed.
    Failed(&'a pb::Sliver),
    /// The slice was deleted or expired meanwhile.
    Gone,
    /// These slivers are not there yet.
    Pending(Vec<&'a pb::Sliver>),
}

/// Judges one snapshot of the slice.
pub fn assess(s: &pb::Slice) -> Outcome<'_> {
    use pb::SliverState as S;
    if matches!(s.state(), pb::SliceState::Deleted | pb::SliceState::Expired) {
        return Outcome::Gone;
    }
    if let Some(failed) = s.slivers.iter().find(|v| v.state() == S::Failed) {
        return Outcome::Failed(failed);
    }
    let done = |v: &pb::Sliver| {
        v.state() == S::Running || (v.state() == S::Exited && v.exit_code.unwrap_or(0) == 0)
    };
    let pending: Vec<&pb::Sliver> = s.slivers.iter().filter(|v| !done(v)).collect();
    if pending.is_empty() && !s.slivers.is_empty() {
        Outcome::Ready
    } else {
        Outcome::Pending(pending)
    }
}

/// "#1 on node-eth (eth)".
fn who(v: &pb::Sliver) -> String {
    format!("#{} on {} ({})", v.index, v.node, v.site)
}

/// How progress is shown.
enum Display {
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<u32, ProgressBar>,
    },
    Lines {
        last: BTreeMap<u32, pb::SliverState>,
    },
    Quiet,
}

impl Display {
    fn new(json: bool) -> Self {
        if json {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: BTreeMap::new(),
            }
        } else {
            Display::Lines {
                last: BTreeMap::new(),
            }
        }
    }

    fn update(&mut self, s: &pb::Slice) {
        let width = s
            .slivers
            .iter()
            .map(|v| who(v).chars().count())
            .max()
            .unwrap_or(0);
        match self {
            Display::Bars { multi, bars } => {
                for v in &s.slivers {
                    let bar = bars.entry(v.index).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new_spinner());
                        b.set_style(
                            ProgressStyle::with_template("{spinner:.cyan} {msg}")
                                .expect("valid template"),
                        );
                        b.enable_steady_tick(Duration::from_millis(100));
                        b
                    });
                    if bar.is_finished() {
                        continue;
                    }
                    let msg = format!("{:<width$}  {}", who(v), progress(v));
                    let mark = match v.state() {
                        pb::SliverState::Running => Some("{prefix:.green} {msg}"),
                        pb::SliverState::Failed => Some("{prefix:.red} {msg}"),
                        _ => None,
                    };
                    match mark {
                        Some(template) => {
                            bar.set_style(
                                ProgressStyle::with_template(template).expect("valid template"),
                            );
                            bar.set_prefix(if v.state() == pb::SliverState::Running {
                                "✓"
                            } else {
                                "✗"
                            });
                            bar.finish_with_message(msg);
                        }
                        None => bar.set_message(msg),
                    }
                }
            }
            Display::Lines { last } => {
                for v in &s.slivers {
                    if last.insert(v.index, v.state()) != Some(v.state()) {
                        eprintln!("sliver {:<width$}  {}", who(v), progress(v));
                    }
                }
            }
            Display::Quiet => {}
        }
    }

    fn finish(self) {
        if let Display::Bars { bars, .. } = self {
            for b in bars.values().filter(|b| !b.is_finished()) {
                b.abandon();
            }
        }
    }
}

/// A sliver's state, with what its node is doing while it creates it (pulling its image from
/// the store, with bytes so far).
fn progress(v: &pb::Sliver) -> String {
    let state = sliver_state(v.state());
    if v.state() == pb::SliverState::Creating && !v.last_error.is_empty() {
        format!("{state}  {}", v.last_error)
    } else {
        state.to_string()
    }
}

/// Polls until the slice is ready; errors name the failed sliver or what is still pending.
pub async fn until_ready(
    c: &mut Clients,
    name: &str,
    timeout: Duration,
    json: bool,
) -> Result<pb::Slice> {
    let deadline = Instant::now() + timeout;
    let mut display = Display::new(json);
    // Opened before the first read, so a change between that read and the stream is not missed.
    let mut events = EventWatch::open(c, &format!("slice/{name}"), 0).await.ok();
    loop {
        let slice = c
            .slices
            .get_slice(GetSliceRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner();
        display.update(&slice);
        let verdict = match assess(&slice) {
            Outcome::Ready => Ok(()),
            Outcome::Gone => Err(format!("slice {name} was deleted while waiting for it")),
            Outcome::Failed(v) => {
                let why = if v.last_error.is_empty() {
                    "no reason given".into()
                } else {
                    v.last_error.clone()
                };
                Err(format!("sliver {} of slice {name} failed: {why}", who(v)))
            }
            Outcome::Pending(pending) if Instant::now() >= deadline => {
                let list: Vec<String> = pending
                    .iter()
                    .map(|v| format!("{} {}", who(v), sliver_state(v.state())))
                    .collect();
                let what = if list.is_empty() {
                    "no slivers placed yet".to_string()
                } else {
                    list.join(", ")
                };
                Err(format!(
                    "timed out after {}: {} of {} slivers not running yet: {what}",
                    format_duration(timeout.as_secs() as i64),
                    pending.len(),
                    slice.slivers.len()
                ))
            }
            Outcome::Pending(_) => {
                let nap = FALLBACK_POLL.min(deadline.saturating_duration_since(Instant::now()));
                watch::wake(&mut events, nap, |_| true).await;
                continue;
            }
        };
        display.finish();
        match verdict {
            Ok(()) => return Ok(slice),
            Err(msg) => bail!(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::SliverState as S;

    fn slice(states: &[S]) -> pb::Slice {
        pb::Slice {
            name: "demo".into(),
            state: pb::SliceState::Provisioning as i32,
            slivers: states
                .iter()
                .enumerate()
                .map(|(i, s)| pb::Sliver {
                    index: i as u32,
                    state: *s as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn judges_snapshots() {
        assert_eq!(assess(&slice(&[S::Running, S::Running])), Outcome::Ready);
        assert!(
            matches!(assess(&slice(&[S::Running, S::Creating])), Outcome::Pending(p) if p.len() == 1)
        );
        assert!(
            matches!(assess(&slice(&[S::Creating, S::Failed])), Outcome::Failed(v) if v.index == 1)
        );
        assert!(matches!(assess(&slice(&[])), Outcome::Pending(p) if p.is_empty()));
        let mut gone = slice(&[S::Stopping]);
        gone.state = pb::SliceState::Deleted as i32;
        assert_eq!(assess(&gone), Outcome::Gone);
    }
}
