//! Per-user caps on concurrent long-lived calls: watch streams, execs and shells, log
//! streams and copies. One user holding thousands of streams must not slow anyone else, so
//! a call past its kind's cap is refused with RESOURCE_EXHAUSTED naming the limit. A slot is
//! held for the life of the call and released when it ends, however it ends. This module only
//! counts; it must never decide who may do what (that is `core`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A kind of long-lived call, each with its own cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Watch,
    Exec,
    Logs,
    Copy,
}

impl StreamKind {
    fn noun(self) -> &'static str {
        match self {
            StreamKind::Watch => "watch",
            StreamKind::Exec => "exec",
            StreamKind::Logs => "logs",
            StreamKind::Copy => "copy",
        }
    }
}

/// Caps per user, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCaps {
    pub watch: usize,
    pub exec: usize,
    pub logs: usize,
    pub copy: usize,
}

impl StreamCaps {
    fn of(&self, kind: StreamKind) -> usize {
        match kind {
            StreamKind::Watch => self.watch,
            StreamKind::Exec => self.exec,
            StreamKind::Logs => self.logs,
            StreamKind::Copy => self.copy,
        }
    }
}

type Counts = Arc<Mutex<HashMap<(String, StreamKind), usize>>>;

/// How many calls of each kind each user holds.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    counts: Counts,
    caps: StreamCaps,
}

/// One held call; released on drop.
#[derive(Debug)]
pub struct Slot {
    counts: Counts,
    key: (String, StreamKind),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.remove(&self.key);
            }
        }
    }
}

impl StreamLimits {
    /// Limits with these caps.
    pub fn new(caps: StreamCaps) -> Self {
        Self {
            counts: Arc::default(),
            caps,
        }
    }

    /// The caps.
    pub fn caps(&self) -> StreamCaps {
        self.caps
    }

    /// Calls of `kind` held now: in all, and by the user holding the most (for metrics; no
    /// user is named).
    pub fn held(&self, kind: StreamKind) -> (usize, usize) {
        let g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .filter(|((_, k), _)| *k == kind)
            .fold((0, 0), |(all, most), (_, n)| (all + n, most.max(*n)))
    }

    /// Takes a slot of `kind` for `user`, or ResourceExhausted at the cap.
    pub fn reserve(&self, user: &str, kind: StreamKind) -> Result<Slot> {
        let cap = self.caps.of(kind);
        let key = (user.to_string(), kind);
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.entry(key.clone()).or_default();
        if *n >= cap {
            return Err(Error::Exhausted(format!(
                "at most {cap} concurrent {} streams per user: {user} holds {cap}; close some first",
                kind.noun()
            )));
        }
        *n += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_counts_all_and_the_busiest_user() {
        let l = StreamLimits::new(StreamCaps {
            watch: 4,
            exec: 4,
            logs: 4,
            copy: 4,
        });
        let _a = [
            l.reserve("alice", StreamKind::Exec).unwrap(),
            l.reserve("alice", StreamKind::Exec).unwrap(),
            l.reserve("bob", StreamKind::Exec).unwrap(),
            l.reserve("bob", StreamKind::Logs).unwrap(),
        ];
        assert_eq!(l.held(StreamKind::Exec), (3, 2));
        assert_eq!(l.held(StreamKind::Logs), (1, 1));
        assert_eq!(l.held(StreamKind::Copy), (0, 0));
    }

    #[test]
    fn each_kind_is_capped_per_user_and_released_on_drop() {
        let l = StreamLimits::new(StreamCaps {
            watch: 2,
            exec: 1,
            logs: 1,
            copy: 1,
        });
        let a = l.reserve("alice", StreamKind::Watch).unwrap();
        let _b = l.reserve("alice", StreamKind::Watch).unwrap();
        let e = l
            .reserve("alice", StreamKind::Watch)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most 2 concurrent watch streams per user"),
            "{e}"
        );
        assert!(l.reserve("bob", StreamKind::Watch).is_ok());
        let _x = l.reserve("alice", StreamKind::Exec).unwrap();
        let e = l
            .reserve("alice", StreamKind::Exec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 1 concurrent exec streams"), "{e}");
        drop(a);
        assert!(l.reserve("alice", StreamKind::Watch).is_ok());
    }
}
