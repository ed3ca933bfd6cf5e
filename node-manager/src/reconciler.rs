//! The reconcile executor: carries out the [`crate::plan`] against a [`Runtime`] — observe,
//! act, observe again — and returns the sliver reports that changed (built by
//! [`crate::reports`]). It never decides what should run (the plan does), and never asks a
//! backend for what its [`Capabilities`] say it cannot do. Errors of single actions are reported and retried later with
//! a per-sliver backoff (the controller-rs "error policy"); they never stop the loop.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::domain::{
    ContainerPhase, ObservedSliver, ReportedState, Resources, SliverReport, SliverSpec,
};
use crate::plan::{reconcile, Action, Conditions, LEASE_ENDED};
use crate::reports::{report_for, StatusTracker};
use crate::runtime::{Capabilities, Runtime, RuntimeError};

/// First delay before retrying a sliver whose creation failed; doubles up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest delay between two creation attempts of a failing sliver.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Container creations in flight at once on one node.
pub const CREATE_CONCURRENCY: usize = 16;
/// How often slivers' disk use is measured (the engine walks every writable layer).
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Retry {
    generation: u64,
    failures: u32,
    not_before: Instant,
}

/// What the node's slivers use right now: the limits of running ones, and how many run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of the limits of running slivers.
    pub resources: Resources,
    /// Running sliver containers.
    pub running: u32,
}

/// Drives one node's containers towards the desired set.
pub struct Reconciler<R> {
    runtime: R,
    tracker: StatusTracker,
    retries: HashMap<String, Retry>,
    usage: Usage,
    /// Reports of a pass the engine broke off; sent with the next pass that completes.
    unsent: Vec<SliverReport>,
    /// The last pass failed to reach the engine.
    engine_lost: bool,
    /// How often disk use is measured, and when it last was.
    disk_interval: Duration,
    disk_checked: Option<Instant>,
    /// Containers over their disk limit at the last measure, with the reason to report.
    over_disk: HashMap<String, String>,
    /// Bytes each container wrote at the last measure, by container id (for usage reports).
    written: HashMap<String, i64>,
    /// Fetches pinned images from the store; `None`: a pinned sliver cannot be run here.
    images: Option<crate::fetch::Images>,
}

/// Why a sliver keeps running on a reclaimed node whose backend cannot pause (added to the
/// owner's reason in its status, so researchers and operators see it instead of an error
/// on every pass).
pub const CANNOT_PAUSE: &str = "this backend cannot pause slivers";

/// Whether the backend can carry out `action` at all: network steps are skipped by a backend
/// without slice networks, pauses by one that cannot pause (see [`CANNOT_PAUSE`]).
fn supported(caps: Capabilities, action: &Action) -> bool {
    match action {
        Action::EnsureNetwork(_) | Action::RemoveNetwork(_) => caps.slice_networks,
        Action::Pause { .. } => caps.pause,
        _ => true,
    }
}

/// Message of a sliver restarted because its lease was renewed past the end its backend
/// gave it (a Kubernetes Pod's deadline, which can only shrink).
pub const RENEWAL_RESTART: &str = "restarting with the renewed lease: the cluster cannot extend a \
    running Pod's deadline, so the sliver runs on in a new Pod (processes and files start afresh)";

/// Prefix of the message of a sliver whose program ended while the engine was away.
pub const ENDED_DURING_OUTAGE: &str = "ended while the container engine was unavailable";

fn usage_of(observed: &[ObservedSliver]) -> Usage {
    let mut u = Usage::default();
    for o in observed.iter().filter(|o| {
        matches!(
            o.phase,
            ContainerPhase::Running | ContainerPhase::RESTARTING
        )
    }) {
        u.running += 1;
        u.resources.cpu_millis += o.limits.cpu_millis;
        u.resources.memory_bytes += o.limits.memory_bytes;
        u.resources.disk_bytes += o.limits.disk_bytes;
    }
    u
}

fn failed(sliver_id: &str, message: String) -> SliverReport {
    SliverReport {
        sliver_id: sliver_id.to_string(),
        state: ReportedState::Failed,
        message,
        exit_code: None,
        container_id: String::new(),
        restarts: 0,
    }
}

impl<R: Runtime> Reconciler<R> {
    /// A reconciler with no memory: everything it needs it reads from the runtime.
    pub fn new(runtime: R) -> Self {
        Self {
            runtime,
            tracker: StatusTracker::default(),
            retries: HashMap::new(),
            usage: Usage::default(),
            unsent: Vec::new(),
            engine_lost: false,
            disk_interval: DISK_CHECK_INTERVAL,
            disk_checked: None,
            over_disk: HashMap::new(),
            written: HashMap::new(),
            images: None,
        }
    }

    /// Fetches the images of pinned slivers with `images`.
    pub fn with_images(mut self, images: Option<crate::fetch::Images>) -> Self {
        self.images = images;
        self
    }

    /// Bytes each container wrote at the last disk measure, by container id.
    pub fn disk_written(&self) -> &HashMap<String, i64> {
        &self.written
    }

    /// Measures disk use every `interval` instead of [`DISK_CHECK_INTERVAL`].
    pub fn with_disk_interval(mut self, interval: Duration) -> Self {
        self.disk_interval = interval;
        self
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Usage as of the last observation.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Reports for every container of the node (for `Hello`); they become the baseline
    /// against which later changes are reported.
    pub async fn snapshot(&mut self) -> Result<Vec<SliverReport>, RuntimeError> {
        let observed = self.runtime.list().await?;
        self.usage = usage_of(&observed);
        self.tracker = StatusTracker::default();
        Ok(observed
            .iter()
            .filter_map(report_for)
            .filter_map(|r| self.tracker.note(r))
            .collect())
    }

    /// Forgets the failure backoff of a sliver (the service sent it again).
    pub fn forgive(&mut self, sliver_id: &str) {
        self.retries.remove(sliver_id);
    }

    /// [`Reconciler::pass_at`] now, not held.
    pub async fn pass(
        &mut self,
        desired: Option<&BTreeMap<String, SliverSpec>>,
    ) -> Result<Vec<SliverReport>, RuntimeError> {
        self.pass_at(desired, &Conditions::at(SystemTime::now()))
            .await
    }

    /// One pass under `cond` (time, reclaim). With `desired` unknown (no `DesiredSet` yet) it
    /// only observes: acting on an empty guess would remove every sliver. Fails only if the
    /// runtime cannot be listed; what the failed pass had to report is kept for the next one.
    pub async fn pass_at(
        &mut self,
        desired: Option<&BTreeMap<String, SliverSpec>>,
        cond: &Conditions,
    ) -> Result<Vec<SliverReport>, RuntimeError> {
        let mut reports = std::mem::take(&mut self.unsent);
        match self.pass_into(desired, cond, &mut reports).await {
            Ok(()) => {
                self.engine_lost = false;
                Ok(reports)
            }
            Err(e) => {
                self.engine_lost = true;
                self.unsent = reports;
                Err(e)
            }
        }
    }

    async fn pass_into(
        &mut self,
        desired: Option<&BTreeMap<String, SliverSpec>>,
        cond: &Conditions,
        reports: &mut Vec<SliverReport>,
    ) -> Result<(), RuntimeError> {
        let caps = self.runtime.capabilities();
        if let Some(desired) = desired {
            let observed = self.runtime.list().await?;
            let networks = if caps.slice_networks {
                self.runtime.list_networks().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot list slice networks");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            self.retries.retain(|id, r| {
                desired
                    .get(id)
                    .is_some_and(|s| s.generation == r.generation)
            });
            let (creates, others): (Vec<Action>, Vec<Action>) =
                reconcile(desired, &observed, &networks, cond)
                    .into_iter()
                    .filter(|a| supported(caps, a))
                    .partition(|a| matches!(a, Action::Create(_) | Action::Replace { .. }));
            // Removals, networks and restarts first (creations need their slice network)...
            for action in others {
                self.execute(action, reports).await;
            }
            // ...then every creation at once: the engine, not the agent, is the bottleneck.
            let mut specs = Vec::new();
            for action in creates {
                match action {
                    Action::Create(spec) => specs.push(spec),
                    Action::Replace { container_id, spec } => {
                        tracing::info!(sliver = %spec.sliver_id, generation = spec.generation, "replacing container");
                        let renewal = observed.iter().any(|o| {
                            o.container_id == container_id
                                && o.generation == spec.generation
                                && crate::plan::outlives(&spec, o)
                        });
                        match self.runtime.remove(&container_id).await {
                            Ok(()) if renewal => {
                                // Said once, as the sliver's state and event: the restart is
                                // the price of a lease the backend cannot extend in place.
                                reports.extend(self.tracker.note(SliverReport {
                                    sliver_id: spec.sliver_id.clone(),
                                    state: ReportedState::Creating,
                                    message: RENEWAL_RESTART.to_string(),
                                    exit_code: None,
                                    container_id: String::new(),
                                    restarts: 0,
                                }));
                                specs.push(spec)
                            }
                            Ok(()) => specs.push(spec),
                            Err(e) => {
                                tracing::warn!(sliver = %spec.sliver_id, error = %e, "cannot remove old container")
                            }
                        }
                    }
                    _ => {}
                }
            }
            let specs = self.pinned_images(specs, reports).await;
            let created = !specs.is_empty();
            self.create_all(specs, reports).await;
            if let Some(images) = self.images.as_ref().filter(|i| i.over_budget()) {
                let in_use = desired
                    .values()
                    .filter(|s| !s.image_digest.is_empty())
                    .map(|s| s.image_digest.clone())
                    .collect();
                images.evict(&self.runtime, &in_use).await;
            }
            // Held: what was just created (or started) runs only until it is frozen here.
            if cond.hold.is_some() && created && caps.pause {
                let observed = self.runtime.list().await?;
                for action in reconcile(desired, &observed, &networks, cond) {
                    if matches!(action, Action::Pause { .. }) {
                        self.execute(action, reports).await;
                    }
                }
            }
        }
        let due = self
            .disk_checked
            .is_none_or(|t| t.elapsed() >= self.disk_interval);
        if caps.disk_usage && due {
            self.enforce_disk().await;
        }
        let observed = self.runtime.list().await?;
        self.usage = usage_of(&observed);
        for mut r in observed.iter().filter_map(report_for) {
            if let Some(reason) = self.over_disk.get(&r.container_id) {
                if matches!(r.state, ReportedState::Exited | ReportedState::Failed) {
                    r.state = ReportedState::Failed;
                    r.message.clone_from(reason);
                }
            }
            match (r.state, &cond.hold) {
                (ReportedState::Suspended, Some(reason)) => r.message.clone_from(reason),
                (ReportedState::Running, Some(reason)) if !caps.pause => {
                    r.message = format!("{reason}; {CANNOT_PAUSE}");
                }
                _ => {}
            }
            self.blame_outage(&mut r);
            reports.extend(self.tracker.note(r));
        }
        // Slivers reported before whose container vanished and that nobody wants (any more,
        // or whose lease ended): gone.
        let vanished: Vec<(String, String)> = self
            .tracker
            .known()
            .filter(|id| !observed.iter().any(|o| o.sliver_id == *id))
            .filter_map(|id| match desired?.get(id) {
                None => Some((id.to_string(), String::new())),
                Some(s) if s.lease_ended(cond.now) => Some((id.to_string(), LEASE_ENDED.into())),
                Some(_) => None,
            })
            .collect();
        for (id, message) in vanished {
            reports.extend(self.deleted(&id, String::new(), message));
        }
        Ok(())
    }

    /// First pass after the engine came back: a sliver that was live before and has ended now
    /// ended during the outage (an engine restart stops every container; its restart policy
    /// decided whether it came back). Say so rather than leave a bare exit code, and keep
    /// saying so while that ended container stays as it is.
    fn blame_outage(&self, r: &mut SliverReport) {
        let ended = matches!(r.state, ReportedState::Exited | ReportedState::Failed);
        let Some(last) = self.tracker.last(&r.sliver_id) else {
            return;
        };
        let was_live = matches!(
            last.state,
            ReportedState::Running | ReportedState::Suspended | ReportedState::Creating
        );
        let same_end = last.state == r.state
            && last.container_id == r.container_id
            && last.exit_code == r.exit_code
            && last.message.starts_with(ENDED_DURING_OUTAGE);
        if ended && same_end {
            r.message.clone_from(&last.message);
        } else if ended && was_live && self.engine_lost {
            r.message = if r.message.is_empty() {
                ENDED_DURING_OUTAGE.to_string()
            } else {
                format!("{ENDED_DURING_OUTAGE} ({})", r.message)
            };
        }
    }

    /// Measures what each container wrote and stops the live ones over their disk limit (where
    /// the engine cannot cap it, this is the limit; where it can, a safety net). What is over
    /// stays known, from the engine's measure, so a restarted agent reports the same reason.
    async fn enforce_disk(&mut self) {
        self.disk_checked = Some(Instant::now());
        let measured = match self.runtime.disk_usage().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure slivers' disk use");
                return;
            }
        };
        let observed = match self.runtime.list().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure slivers' disk use");
                return;
            }
        };
        self.written = measured
            .iter()
            .map(|m| (m.container_id.clone(), m.bytes))
            .collect();
        let mut over = HashMap::new();
        for o in &observed {
            let limit = o.limits.disk_bytes;
            let Some(used) = measured
                .iter()
                .find(|m| m.container_id == o.container_id)
                .map(|m| m.bytes)
            else {
                continue;
            };
            if limit <= 0 || used <= limit {
                continue;
            }
            let reason = format!(
                "disk limit {} exceeded: {} written",
                slicebed_units::format_size(limit),
                slicebed_units::format_size(used)
            );
            if matches!(
                o.phase,
                ContainerPhase::Running | ContainerPhase::Paused | ContainerPhase::RESTARTING
            ) {
                tracing::warn!(sliver = %o.sliver_id, %reason, "stopping sliver");
                if let Err(e) = self.runtime.stop(&o.container_id).await {
                    tracing::warn!(sliver = %o.sliver_id, error = %e, "cannot stop sliver over its disk limit");
                }
            }
            over.insert(o.container_id.clone(), reason);
        }
        self.over_disk = over;
    }

    fn deleted(
        &mut self,
        sliver_id: &str,
        container_id: String,
        message: String,
    ) -> Option<SliverReport> {
        let r = self.tracker.note(SliverReport {
            sliver_id: sliver_id.to_string(),
            state: ReportedState::Deleted,
            message,
            exit_code: None,
            container_id,
            restarts: 0,
        });
        self.tracker.forget(sliver_id);
        r
    }

    async fn execute(&mut self, action: Action, reports: &mut Vec<SliverReport>) {
        tracing::debug!(?action, "reconcile");
        match action {
            Action::Remove {
                container_id,
                sliver_id,
                deleted,
                message,
            } => match self.runtime.remove(&container_id).await {
                Ok(()) if deleted => {
                    tracing::info!(sliver = %sliver_id, container = %container_id, reason = %message, "removed sliver");
                    reports.extend(self.deleted(&sliver_id, container_id, message));
                }
                Ok(()) => {
                    tracing::info!(sliver = %sliver_id, container = %container_id, "removed duplicate")
                }
                Err(e) => {
                    tracing::warn!(sliver = %sliver_id, error = %e, "cannot remove container")
                }
            },
            Action::RemoveNetwork(slice) => match self.runtime.remove_network(&slice).await {
                Ok(()) => tracing::info!(%slice, "removed slice network"),
                Err(e) => tracing::warn!(%slice, error = %e, "cannot remove slice network"),
            },
            Action::EnsureNetwork(slice) => {
                if let Err(e) = self.runtime.ensure_network(&slice).await {
                    // The creations in this slice fail next and report it.
                    tracing::warn!(%slice, error = %e, "cannot create slice network");
                }
            }
            Action::Start {
                container_id,
                sliver_id,
            } => {
                match self.runtime.start(&container_id).await {
                    Ok(()) => {}
                    // The pass ends at its next listing; the sliver did nothing wrong.
                    Err(e) if e.is_unavailable() => {
                        tracing::warn!(sliver = %sliver_id, error = %e, "cannot start container")
                    }
                    Err(e) => {
                        tracing::warn!(sliver = %sliver_id, error = %e, "cannot start container");
                        reports.extend(self.tracker.note(failed(&sliver_id, e.to_string())));
                    }
                }
            }
            Action::Pause {
                container_id,
                sliver_id,
            } => match self.runtime.pause(&container_id).await {
                Ok(()) => tracing::info!(sliver = %sliver_id, "paused sliver (node reclaimed)"),
                // A sliver between two restarts cannot be frozen; the next pass tries again.
                Err(e) => tracing::warn!(sliver = %sliver_id, error = %e, "cannot pause container"),
            },
            Action::Unpause {
                container_id,
                sliver_id,
            } => match self.runtime.unpause(&container_id).await {
                Ok(()) => tracing::info!(sliver = %sliver_id, "unpaused sliver (node released)"),
                Err(e) => {
                    tracing::warn!(sliver = %sliver_id, error = %e, "cannot unpause container")
                }
            },
            // Creations are batched by `pass` and run concurrently in `create_all`.
            Action::Replace { .. } | Action::Create(_) => {}
        }
    }

    /// Creates and starts the given slivers concurrently (at most [`CREATE_CONCURRENCY`] at a
    /// time), skipping those still in their failure backoff.
    async fn create_all(&mut self, specs: Vec<SliverSpec>, reports: &mut Vec<SliverReport>) {
        use futures::StreamExt;
        let now = Instant::now();
        let specs: Vec<SliverSpec> = specs
            .into_iter()
            .filter(|s| {
                self.retries
                    .get(&s.sliver_id)
                    .is_none_or(|r| r.not_before <= now)
            })
            .collect();
        for spec in &specs {
            reports.extend(self.tracker.note(SliverReport {
                sliver_id: spec.sliver_id.clone(),
                state: ReportedState::Creating,
                message: String::new(),
                exit_code: None,
                container_id: String::new(),
                restarts: 0,
            }));
        }
        let runtime = &self.runtime;
        let results: Vec<(SliverSpec, Result<String, RuntimeError>)> = futures::stream::iter(specs)
            .map(|spec| async move {
                let r = runtime.create_and_start(&spec).await;
                (spec, r)
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        for (spec, result) in results {
            self.created(spec, result, now, reports);
        }
    }

    fn created(
        &mut self,
        spec: SliverSpec,
        result: Result<String, RuntimeError>,
        now: Instant,
        reports: &mut Vec<SliverReport>,
    ) {
        match result {
            Ok(id) => {
                tracing::info!(sliver = %spec.sliver_id, slice = %spec.slice, container = %id, "started sliver");
                self.retries.remove(&spec.sliver_id);
            }
            // Not the sliver's fault and no reason to back off: the engine is away, and the
            // pass after its return creates it.
            Err(e) if e.is_unavailable() => {
                tracing::warn!(sliver = %spec.sliver_id, error = %e, "cannot create sliver");
            }
            Err(e) => {
                let message = match &e {
                    RuntimeError::ImageMissing { image } => format!(
                        "image {image:?} is not present on node {} (no registry is reachable; build or import it)",
                        self.runtime.node()
                    ),
                    other => other.to_string(),
                };
                self.fail(&spec, message, now, reports);
            }
        }
    }

    /// Reports `spec` failed and backs off before trying it again.
    fn fail(
        &mut self,
        spec: &SliverSpec,
        message: String,
        now: Instant,
        reports: &mut Vec<SliverReport>,
    ) {
        tracing::warn!(sliver = %spec.sliver_id, error = %message, "cannot create sliver");
        reports.extend(self.tracker.note(failed(&spec.sliver_id, message)));
        let failures = self.retries.get(&spec.sliver_id).map_or(0, |r| r.failures) + 1;
        let delay = RETRY_BASE
            .saturating_mul(1 << (failures - 1).min(16))
            .min(RETRY_MAX);
        self.retries.insert(
            spec.sliver_id.clone(),
            Retry {
                generation: spec.generation,
                failures,
                not_before: now + delay,
            },
        );
    }

    /// The specs that can be created now: unpinned ones as they are, pinned ones whose image
    /// is in the engine with their image set to its digest's local tag. A pinned image the
    /// engine lacks is fetched (once per digest, shared by its slivers) while its slivers
    /// report `creating` with the fetch's progress; one that cannot be had fails them.
    async fn pinned_images(
        &mut self,
        specs: Vec<SliverSpec>,
        reports: &mut Vec<SliverReport>,
    ) -> Vec<SliverSpec> {
        let now = Instant::now();
        let specs: Vec<SliverSpec> = specs
            .into_iter()
            .filter(|s| {
                self.retries
                    .get(&s.sliver_id)
                    .is_none_or(|r| r.not_before <= now)
            })
            .collect();
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut ready: HashMap<String, Option<crate::fetch::Ready>> = HashMap::new();
        let mut out = Vec::new();
        for mut spec in specs {
            if spec.image_digest.is_empty() {
                out.push(spec);
                continue;
            }
            let Some(images) = self.images.clone() else {
                let message = format!(
                    "image {} ({}) is pinned, but this node manager cannot fetch images",
                    spec.image, spec.image_digest
                );
                self.fail(&spec, message, now, reports);
                continue;
            };
            if !ready.contains_key(&spec.image_digest) {
                let r = match images
                    .prepare(&self.runtime, &spec.image, &spec.image_digest, now_ms)
                    .await
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(image = %spec.image_digest, error = %e, "cannot check or load image");
                        None
                    }
                };
                ready.insert(spec.image_digest.clone(), r);
            }
            match ready[&spec.image_digest].clone() {
                Some(crate::fetch::Ready::Yes(reference)) => {
                    spec.image = reference;
                    out.push(spec);
                }
                Some(crate::fetch::Ready::Pulling(message)) => {
                    reports.extend(self.tracker.note(SliverReport {
                        sliver_id: spec.sliver_id.clone(),
                        state: ReportedState::Creating,
                        message,
                        exit_code: None,
                        container_id: String::new(),
                        restarts: 0,
                    }));
                }
                Some(crate::fetch::Ready::Failed(message)) => {
                    self.fail(&spec, message, now, reports)
                }
                // The engine did not answer: the next pass tries again.
                None => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
