//! Owner reclaim, Condor-style: the machine belongs to someone who lends it to the testbed
//! while away. When the owner is back (a flag file written by `node-manager reclaim on`), or
//! the host is busy (1-minute load above a threshold), every sliver is paused, not killed,
//! and thawed when the machine is released. This module decides; the reconciler acts.
//!
//! The flag lives in the state dir so it survives agent restarts; the paused containers
//! themselves are the rest of the state (the engine is the source of truth).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Name of the flag file in the state dir.
pub const FLAG_FILE: &str = "reclaim";
/// Report message while the owner holds the node.
pub const OWNER_RECLAIMED: &str = "owner reclaimed the node";
/// How often the agent looks at the flag and the load.
pub const POLL: Duration = Duration::from_secs(1);
/// Load reclaim ends when the load falls below this share of the threshold (hysteresis, so a
/// load hovering around the threshold does not pause and thaw slivers every second).
pub const RELEASE_RATIO: f64 = 0.8;

/// The flag file of a state dir.
pub fn flag_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FLAG_FILE)
}

/// What `node-manager reclaim on` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Seconds since the epoch when it was set (0 if unreadable).
    pub since: u64,
    /// Free text from the owner; may be empty.
    pub reason: String,
}

impl Flag {
    /// The flag file's content.
    pub fn render(&self) -> String {
        format!("since={}\nreason={}\n", self.since, self.reason)
    }

    /// Reads the content; anything unexpected is kept as the reason (the flag counts anyway).
    pub fn parse(text: &str) -> Self {
        let mut f = Flag {
            since: 0,
            reason: String::new(),
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("since=") {
                f.since = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("reason=") {
                f.reason = v.trim().to_string();
            } else if f.reason.is_empty() {
                f.reason = line.trim().to_string();
            }
        }
        f
    }

    /// The message slivers are reported SUSPENDED with.
    pub fn message(&self) -> String {
        if self.reason.is_empty() {
            OWNER_RECLAIMED.to_string()
        } else {
            format!("{OWNER_RECLAIMED}: {}", self.reason)
        }
    }
}

/// Sets the flag (atomically: write then rename, so the agent never reads half a file).
pub fn set(state_dir: &Path, reason: &str, now: SystemTime) -> std::io::Result<Flag> {
    let flag = Flag {
        since: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let path = flag_path(state_dir);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, flag.render())?;
    std::fs::rename(&tmp, &path)?;
    Ok(flag)
}

/// Clears the flag; clearing an absent flag is fine. Returns whether it was set.
pub fn clear(state_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(flag_path(state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The flag, if set.
pub fn read(state_dir: &Path) -> std::io::Result<Option<Flag>> {
    match std::fs::read_to_string(flag_path(state_dir)) {
        Ok(text) => Ok(Some(Flag::parse(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The 1-minute load average from the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The host's 1-minute load average, if readable.
pub fn loadavg() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// Decides whether the node is held, from the flag and the load. Pure apart from its memory
/// of the load episode (for hysteresis and a stable message).
#[derive(Debug, Clone, Default)]
pub struct Decider {
    threshold: Option<f64>,
    /// The message of the load episode in progress, fixed when it began so that a load going
    /// from 4.1 to 4.3 does not produce a new report every second.
    load_hold: Option<String>,
}

impl Decider {
    /// With `threshold`, a load above it reclaims the node until it falls below
    /// [`RELEASE_RATIO`] of it.
    pub fn new(threshold: Option<f64>) -> Self {
        Self {
            threshold: threshold.filter(|t| t.is_finite() && *t > 0.0),
            load_hold: None,
        }
    }

    /// `Some(message)` while the node is held. The owner's flag wins over the load; an
    /// unreadable load keeps the current load decision.
    pub fn decide(&mut self, flag: Option<&Flag>, load: Option<f64>) -> Option<String> {
        if let (Some(t), Some(l)) = (self.threshold, load) {
            if self.load_hold.is_none() && l > t {
                self.load_hold = Some(format!("host load {l:.1} above {t}"));
            } else if self.load_hold.is_some() && l < t * RELEASE_RATIO {
                self.load_hold = None;
            }
        }
        flag.map(Flag::message).or_else(|| self.load_hold.clone())
    }
}

/// Polls the flag in `state_dir` and the load every [`POLL`] and publishes the decision
/// (`Some(message)` while held) until every receiver is gone.
pub async fn watch(state_dir: PathBuf, threshold: Option<f64>, tx: watch::Sender<Option<String>>) {
    let mut decider = Decider::new(threshold);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        let flag = match read(&state_dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %flag_path(&state_dir).display(), error = %e, "cannot read the reclaim flag; keeping the last decision");
                continue;
            }
        };
        let load = if decider.threshold.is_some() {
            loadavg()
        } else {
            None
        };
        let hold = decider.decide(flag.as_ref(), load);
        tx.send_if_modified(|current| {
            if *current == hold {
                return false;
            }
            match &hold {
                Some(why) => tracing::info!(reason = %why, "node reclaimed: pausing slivers"),
                None => tracing::info!("node released: resuming slivers"),
            }
            *current = hold;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(reason: &str) -> Flag {
        Flag {
            since: 1,
            reason: reason.into(),
        }
    }

    #[test]
    fn flag_alone_holds_and_names_the_owner() {
        let mut d = Decider::new(None);
        assert_eq!(d.decide(None, Some(99.0)), None);
        assert_eq!(
            d.decide(Some(&flag("")), None).as_deref(),
            Some("owner reclaimed the node")
        );
        assert_eq!(
            d.decide(Some(&flag("compiling")), None).as_deref(),
            Some("owner reclaimed the node: compiling")
        );
        assert_eq!(d.decide(None, None), None);
    }

    #[test]
    fn load_holds_with_hysteresis_and_a_stable_message() {
        let mut d = Decider::new(Some(3.5));
        assert_eq!(
            d.decide(None, Some(3.5)),
            None,
            "at the threshold is not above"
        );
        let held = d.decide(None, Some(4.1));
        assert_eq!(held.as_deref(), Some("host load 4.1 above 3.5"));
        // Still high, or between 80% and 100% of the threshold: held, same message.
        assert_eq!(d.decide(None, Some(4.6)), held);
        assert_eq!(d.decide(None, Some(2.9)), held);
        // An unreadable load changes nothing.
        assert_eq!(d.decide(None, None), held);
        // Below 80% (2.8): released; rising back to 3.4 does not hold again.
        assert_eq!(d.decide(None, Some(2.7)), None);
        assert_eq!(d.decide(None, Some(3.4)), None);
    }

    #[test]
    fn flag_wins_over_load() {
        let mut d = Decider::new(Some(1.0));
        assert_eq!(
            d.decide(Some(&flag("")), Some(5.0)).as_deref(),
            Some(OWNER_RECLAIMED)
        );
        // The load episode continues underneath once the owner leaves.
        assert_eq!(
            d.decide(None, Some(5.0)).as_deref(),
            Some("host load 5.0 above 1")
        );
    }

    #[test]
    fn flag_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let f = set(
            dir.path(),
            "back  at\tmy desk",
            UNIX_EPOCH + Duration::from_secs(42),
        )
        .unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(f.clone()));
        assert_eq!((f.since, f.reason.as_str()), (42, "back at my desk"));
        assert!(clear(dir.path()).unwrap());
        assert!(!clear(dir.path()).unwrap());
        // A hand-written flag counts too.
        std::fs::write(flag_path(dir.path()), "lunch is over\n").unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().reason, "lunch is over");
    }

    #[test]
    fn parses_proc_loadavg() {
        assert_eq!(parse_loadavg("4.12 3.00 2.50 2/345 6789\n"), Some(4.12));
        assert_eq!(parse_loadavg(""), None);
    }
}
