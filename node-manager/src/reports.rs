//! Building sliver reports: what a node reports for an observed container, and which reports
//! are news. Pure; it must never talk to the backend or the service.
//!
//! The service only wants changes, so the tracker remembers the last report per sliver for
//! the life of one control connection; the baseline is what `Hello` carried.

use std::collections::HashMap;

use slicebed_units::format_size_exact;

use crate::domain::{ContainerPhase, ObservedSliver, ReportedState, SliverReport};

/// The report for a container, or `None` while it is being removed.
pub fn report_for(o: &ObservedSliver) -> Option<SliverReport> {
    let code = o.exit_code.map(|c| c as i32);
    let (state, message, exit_code) = match o.phase {
        ContainerPhase::Removing => return None,
        ContainerPhase::Created => (ReportedState::Creating, String::new(), None),
        ContainerPhase::Running => (ReportedState::Running, String::new(), None),
        // Between two runs of its restart policy the sliver counts as running; `restarts` tells.
        ContainerPhase::RESTARTING => {
            let message = match code {
                Some(c) => format!("restarting after exit code {c}"),
                None => "restarting".to_string(),
            };
            (ReportedState::Running, message, code)
        }
        ContainerPhase::Paused => (ReportedState::Suspended, "paused".to_string(), None),
        ContainerPhase::Exited { .. } | ContainerPhase::Broken if o.oom_killed => {
            let message = if o.limits.memory_bytes > 0 {
                format!(
                    "OOM-killed (memory limit {})",
                    format_size_exact(o.limits.memory_bytes)
                )
            } else {
                "OOM-killed".to_string()
            };
            (ReportedState::Failed, message, code)
        }
        ContainerPhase::Exited { .. } | ContainerPhase::Broken => match (code, &o.error) {
            (_, Some(err)) => (ReportedState::Failed, err.clone(), code),
            (Some(0), None) => (ReportedState::Exited, String::new(), Some(0)),
            (Some(c), None) => (ReportedState::Failed, format!("exit code {c}"), Some(c)),
            (None, None) => (
                ReportedState::Failed,
                "ended without an exit code".into(),
                None,
            ),
        },
    };
    Some(SliverReport {
        sliver_id: o.sliver_id.clone(),
        state,
        message,
        exit_code,
        container_id: o.container_id.clone(),
        restarts: o.restarts,
    })
}

/// Remembers the last report per sliver to send only changes.
#[derive(Debug, Default)]
pub struct StatusTracker {
    last: HashMap<String, SliverReport>,
}

impl StatusTracker {
    /// Records `r`; returns it if it differs from the last report of its sliver.
    pub fn note(&mut self, r: SliverReport) -> Option<SliverReport> {
        if self.last.get(&r.sliver_id) == Some(&r) {
            return None;
        }
        self.last.insert(r.sliver_id.clone(), r.clone());
        Some(r)
    }

    /// Forgets a sliver (after reporting it DELETED).
    pub fn forget(&mut self, sliver_id: &str) {
        self.last.remove(sliver_id);
    }

    /// Slivers with a remembered report.
    pub fn known(&self) -> impl Iterator<Item = &str> {
        self.last.keys().map(String::as_str)
    }

    /// The last report of a sliver.
    pub fn last(&self, sliver_id: &str) -> Option<&SliverReport> {
        self.last.get(sliver_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Resources;

    fn obs(phase: ContainerPhase, exit_code: Option<i64>) -> ObservedSliver {
        ObservedSliver {
            container_id: "c1".into(),
            sliver_id: "s1".into(),
            slice: "web".into(),
            generation: 1,
            phase,
            exit_code,
            oom_killed: false,
            restarts: 0,
            limits: Resources {
                cpu_millis: 100,
                memory_bytes: 256 << 20,
                disk_bytes: 0,
            },
            error: None,
            ends_at: None,
        }
    }

    #[test]
    fn exit_codes_map_to_exited_or_failed() {
        let r = report_for(&obs(ContainerPhase::EXITED, Some(0))).unwrap();
        assert_eq!((r.state, r.exit_code), (ReportedState::Exited, Some(0)));
        let r = report_for(&obs(ContainerPhase::EXITED, Some(3))).unwrap();
        assert_eq!(
            (r.state, r.message.as_str(), r.exit_code),
            (ReportedState::Failed, "exit code 3", Some(3))
        );
    }

    #[test]
    fn oom_names_the_limit() {
        let mut o = obs(ContainerPhase::EXITED, Some(137));
        o.oom_killed = true;
        let r = report_for(&o).unwrap();
        assert_eq!(r.state, ReportedState::Failed);
        assert_eq!(r.message, "OOM-killed (memory limit 256Mi)");
    }

    #[test]
    fn restarting_counts_as_running_with_restarts() {
        let mut o = obs(ContainerPhase::RESTARTING, Some(1));
        o.restarts = 4;
        let r = report_for(&o).unwrap();
        assert_eq!((r.state, r.restarts), (ReportedState::Running, 4));
    }

    #[test]
    fn tracker_reports_only_changes() {
        let mut t = StatusTracker::default();
        let r = report_for(&obs(ContainerPhase::Running, None)).unwrap();
        assert!(t.note(r.clone()).is_some());
        assert!(t.note(r).is_none());
        assert!(t
            .note(report_for(&obs(ContainerPhase::EXITED, Some(0))).unwrap())
            .is_some());
    }
}
