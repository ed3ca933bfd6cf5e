//! The reconcile plan, the pure heart of the node manager: given what should run and what the
//! backend shows, which actions bring them together (controller-rs shape). It must never do
//! I/O or read the clock; [`crate::reconciler`] executes the plan against a backend. Because the input is read back from the engine every time, the
//! result is the same after a crash, a `kill -9` or a restart: no duplicates, no orphans.
//!
//! Time and the owner's claim on the machine come in as [`Conditions`], never read here, so
//! lease expiry and reclaim are tested with a fixed clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::domain::{ContainerPhase, ObservedSliver, SliverSpec};

/// One step towards the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove a container. `deleted`: its sliver is not desired any more (report DELETED);
    /// otherwise it is a surplus duplicate of a sliver that stays.
    Remove {
        /// Container id.
        container_id: String,
        /// Its sliver.
        sliver_id: String,
        /// Whether the sliver itself goes away.
        deleted: bool,
        /// Why, for the DELETED report ("lease ended"); empty when the service removed it.
        message: String,
    },
    /// Freeze a running sliver: the machine's owner reclaimed the node.
    Pause {
        /// Container id.
        container_id: String,
        /// Its sliver.
        sliver_id: String,
    },
    /// Thaw a paused sliver: the owner released the node.
    Unpause {
        /// Container id.
        container_id: String,
        /// Its sliver.
        sliver_id: String,
    },
    /// Remove a slice network nothing on this node needs any more.
    RemoveNetwork(String),
    /// Make sure a slice network exists before creating containers in it.
    EnsureNetwork(String),
    /// Start a container that was created but never started (the agent died in between).
    Start {
        /// Container id.
        container_id: String,
        /// Its sliver.
        sliver_id: String,
    },
    /// Replace a container of another generation (or a dead one) with a new one.
    Replace {
        /// The old container.
        container_id: String,
        /// The spec to create.
        spec: SliverSpec,
    },
    /// Create and start a missing sliver.
    Create(SliverSpec),
}

/// DELETED message of a sliver whose lease ran out on the node.
pub const LEASE_ENDED: &str = "lease ended";

/// What the reconciler must take into account besides desired and observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// The wall-clock time of this pass; slivers whose lease ended by then are not desired.
    pub now: SystemTime,
    /// `Some(reason)` while the owner has reclaimed the node: slivers are kept but paused.
    pub hold: Option<String>,
}

impl Conditions {
    /// Nothing held, at `now`.
    pub fn at(now: SystemTime) -> Self {
        Self { now, hold: None }
    }

    /// The same, held for `reason`.
    pub fn held(mut self, reason: impl Into<String>) -> Self {
        self.hold = Some(reason.into());
        self
    }
}

/// The desired slivers whose lease has not ended at `now`. A renewal (an upsert with a later
/// end) that arrives before the old end keeps the sliver in here without a gap.
pub fn live(
    desired: &BTreeMap<String, SliverSpec>,
    now: SystemTime,
) -> BTreeMap<String, SliverSpec> {
    desired
        .iter()
        .filter(|(_, s)| !s.lease_ended(now))
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect()
}

/// The earliest lease end after `now`: when a pass must run to stop a sliver on time.
pub fn next_lease_end(
    desired: &BTreeMap<String, SliverSpec>,
    now: SystemTime,
) -> Option<SystemTime> {
    desired
        .values()
        .filter_map(|s| s.lease_expires_at)
        .filter(|end| *end > now)
        .min()
}

/// Whether the desired lease runs past the end the backend itself gives `o` (a Kubernetes
/// Pod's deadline, which can only shrink): only a new container lives on after a renewal.
pub fn outlives(spec: &SliverSpec, o: &ObservedSliver) -> bool {
    matches!((spec.lease_expires_at, o.ends_at), (Some(lease), Some(end)) if lease > end)
}

/// Rank of a container when several claim the same sliver: the one to keep sorts first. One
/// on its way out never wins over its replacement (a renewal's new Pod still being created
/// must not be taken for a surplus beside the old one being deleted).
fn keep_rank(o: &ObservedSliver, spec: &SliverSpec) -> (bool, bool, bool, bool, String) {
    let live = matches!(
        o.phase,
        ContainerPhase::Running | ContainerPhase::RESTARTING
    );
    (
        o.generation != spec.generation,
        o.phase == ContainerPhase::Removing,
        outlives(spec, o),
        !live,
        o.container_id.clone(),
    )
}

/// The actions that turn `observed` (containers and slice networks of this node) into `desired`.
/// Order: removals first (they free ports and names), then networks, then pauses, unpauses,
/// starts and creations. A sliver whose lease ended counts as not desired; while held, kept
/// slivers are paused (new ones are created and paused by the executor right after).
pub fn reconcile(
    all_desired: &BTreeMap<String, SliverSpec>,
    observed: &[ObservedSliver],
    networks: &[String],
    cond: &Conditions,
) -> Vec<Action> {
    let desired = &live(all_desired, cond.now);
    let mut removals = Vec::new();
    let mut starts = Vec::new();
    let mut creations = Vec::new();

    let mut by_sliver: BTreeMap<&str, Vec<&ObservedSliver>> = BTreeMap::new();
    for o in observed {
        by_sliver.entry(o.sliver_id.as_str()).or_default().push(o);
    }

    for (sliver_id, mut containers) in by_sliver.clone() {
        let Some(spec) = desired.get(sliver_id) else {
            let message = if all_desired.contains_key(sliver_id) {
                LEASE_ENDED.to_string()
            } else {
                String::new()
            };
            for o in containers
                .into_iter()
                .filter(|o| o.phase != ContainerPhase::Removing)
            {
                removals.push(Action::Remove {
                    container_id: o.container_id.clone(),
                    sliver_id: o.sliver_id.clone(),
                    deleted: true,
                    message: message.clone(),
                });
            }
            continue;
        };
        containers.sort_by_key(|o| keep_rank(o, spec));
        let (keep, surplus) = containers
            .split_first()
            .expect("grouped containers are never empty");
        for o in surplus
            .iter()
            .filter(|o| o.phase != ContainerPhase::Removing)
        {
            removals.push(Action::Remove {
                container_id: o.container_id.clone(),
                sliver_id: o.sliver_id.clone(),
                deleted: false,
                message: String::new(),
            });
        }
        match keep.phase {
            // Wait for the engine to finish; the next pass creates the new one.
            ContainerPhase::Removing => {}
            _ if keep.generation != spec.generation
                || keep.phase == ContainerPhase::Broken
                || outlives(spec, keep) =>
            {
                creations.push(Action::Replace {
                    container_id: keep.container_id.clone(),
                    spec: spec.clone(),
                })
            }
            ContainerPhase::Created => starts.push(Action::Start {
                container_id: keep.container_id.clone(),
                sliver_id: keep.sliver_id.clone(),
            }),
            ContainerPhase::Running | ContainerPhase::RESTARTING if cond.hold.is_some() => starts
                .push(Action::Pause {
                    container_id: keep.container_id.clone(),
                    sliver_id: keep.sliver_id.clone(),
                }),
            // The agent owns its slivers' pauses: not held means nothing stays frozen.
            ContainerPhase::Paused if cond.hold.is_none() => starts.push(Action::Unpause {
                container_id: keep.container_id.clone(),
                sliver_id: keep.sliver_id.clone(),
            }),
            // Adopt: running, restarting, paused or ended containers of the right generation
            // are the sliver; the engine's restart policy decides whether an ended one runs again.
            _ => {}
        }
    }
    for (id, spec) in desired {
        if !by_sliver.contains_key(id.as_str()) {
            creations.push(Action::Create(spec.clone()));
        }
    }

    let wanted: BTreeSet<&str> = desired.values().map(|s| s.slice.as_str()).collect();
    let existing: BTreeSet<&str> = networks.iter().map(String::as_str).collect();
    let mut actions = removals;
    actions.extend(
        existing
            .difference(&wanted)
            .map(|s| Action::RemoveNetwork(s.to_string())),
    );
    let needs_network: BTreeSet<&str> = creations
        .iter()
        .filter_map(|a| match a {
            Action::Create(s) | Action::Replace { spec: s, .. } => Some(s.slice.as_str()),
            _ => None,
        })
        .collect();
    actions.extend(
        needs_network
            .difference(&existing)
            .map(|s| Action::EnsureNetwork(s.to_string())),
    );
    actions.extend(starts);
    actions.extend(creations);
    actions
}

#[cfg(test)]
mod tests;
