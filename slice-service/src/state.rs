//! The sliver state machine: which transitions are legal and why others are not.
//! Every transition the service applies goes through `SliverState::transition`, by way of
//! `Sliver::move_to`: node reports, deletes and lease ends, replacement, drain deadlines and
//! node deletion alike. Code must never assign a sliver's state directly.

/// Lifecycle of a sliver (see slicebed.v1.SliverState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SliverState {
    Pending,
    Creating,
    Running,
    Exited,
    Failed,
    Stopping,
    Deleted,
    Suspended,
}

/// An illegal transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sliver cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub to: &'static str,
}

impl SliverState {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SliverState::Pending => "pending",
            SliverState::Creating => "creating",
            SliverState::Running => "running",
            SliverState::Exited => "exited",
            SliverState::Failed => "failed",
            SliverState::Stopping => "stopping",
            SliverState::Deleted => "deleted",
            SliverState::Suspended => "suspended",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => SliverState::Pending,
            "creating" => SliverState::Creating,
            "running" => SliverState::Running,
            "exited" => SliverState::Exited,
            "failed" => SliverState::Failed,
            "stopping" => SliverState::Stopping,
            "deleted" => SliverState::Deleted,
            "suspended" => SliverState::Suspended,
            _ => return None,
        })
    }

    /// Whether the sliver still holds capacity on its node.
    pub fn holds_capacity(self) -> bool {
        self != SliverState::Deleted
    }

    /// Whether a node may still run it (the slice wants it).
    pub fn is_live(self) -> bool {
        !matches!(self, SliverState::Stopping | SliverState::Deleted)
    }

    /// Whether the service may ask for its removal.
    pub fn can_stop(self) -> bool {
        self.is_live()
    }

    /// Checks a transition. Reports from a node can only move a live sliver between the
    /// running states, or finish a stopping one; nothing leaves `Deleted`.
    pub fn transition(self, to: SliverState) -> Result<SliverState, IllegalTransition> {
        use SliverState::*;
        let ok = match (self, to) {
            (Deleted, _) => false,
            (Stopping, Deleted) => true,
            (Stopping, _) => false,
            (_, Stopping) => true,
            (_, Deleted) => true,
            (_, Pending) => false,
            (
                Pending | Creating | Running | Exited | Failed | Suspended,
                Creating | Running | Exited | Failed | Suspended,
            ) => true,
        };
        if ok {
            Ok(to)
        } else {
            Err(IllegalTransition {
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SliverState::*;
    use super::*;

    const ALL: [SliverState; 8] = [
        Pending, Creating, Running, Exited, Failed, Stopping, Deleted, Suspended,
    ];

    #[test]
    fn deleted_is_terminal() {
        for s in ALL {
            assert!(Deleted.transition(s).is_err(), "deleted -> {s:?}");
        }
    }

    #[test]
    fn stopping_only_ends_deleted() {
        for s in ALL {
            assert_eq!(
                Stopping.transition(s).is_ok(),
                s == Deleted,
                "stopping -> {s:?}"
            );
        }
    }

    #[test]
    fn running_lifecycle() {
        assert_eq!(Pending.transition(Creating), Ok(Creating));
        assert_eq!(Creating.transition(Running), Ok(Running));
        assert_eq!(Running.transition(Failed), Ok(Failed));
        assert_eq!(Failed.transition(Running), Ok(Running));
        assert!(Running.transition(Pending).is_err());
        assert_eq!(Running.transition(Stopping), Ok(Stopping));
    }

    #[test]
    fn names_round_trip() {
        for s in ALL {
            assert_eq!(SliverState::parse(s.as_str()), Some(s));
        }
    }
}
