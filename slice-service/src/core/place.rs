//! Placement: a new slice's slivers are chosen from the fleet index and committed with the
//! slice, all or nothing, under conditions the database checks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::NodeCommand;
use crate::model::{AssignedPort, NewEvent, Node, NodeState, Slice, SliceLife, Sliver, User};
use crate::scheduler::{self, Candidate, Count, Placement, Request, Unavailable};
use crate::state::SliverState;
use crate::store;

use super::fleet::Fleet;
use super::spec::days;
use super::{Core, SliceSpec, SliceView, SliverView};

/// Grace period before slivers of a lost node are re-placed, unless the slice says otherwise.
const DEFAULT_REPLACE_AFTER: Duration = Duration::from_secs(300);

/// How often a placement is tried again when the database refuses what the index offered.
const CONFLICT_RETRIES: usize = 3;

/// A slice and its slivers ready to be written.
#[derive(Debug)]
pub(super) struct Planned {
    slice: Slice,
    slivers: Vec<Sliver>,
    warnings: Vec<String>,
}

/// A create waiting for the placer (`Core::creates`).
#[derive(Debug)]
pub(super) struct Job {
    who: User,
    actor: String,
    spec: SliceSpec,
    done: oneshot::Sender<Result<Planned>>,
}

impl Core {
    /// Places and records a slice; capacity is committed in the same transaction.
    ///
    /// Creates are committed in groups: each queues its request and starts a placer task; the
    /// first placer to take the placement lock plans everything queued, one request after the
    /// other on the fleet index (so each sees what the earlier ones took), and commits them in
    /// one transaction. A request refused in planning gets its own explanation and the others
    /// go on; if the database refuses the group, each is placed again on its own. The placer
    /// runs as its own task, so a caller that goes away never leaves a group half done.
    pub async fn create_slice(
        self: &Arc<Self>,
        p: &Principal,
        spec: SliceSpec,
    ) -> Result<(SliceView, Vec<String>)> {
        let started = std::time::Instant::now();
        let r = self.create_slice_placed(p, spec).await;
        if let Some(m) = self.placement_metrics.get() {
            m.placement(started.elapsed(), crate::metrics::PlacementOutcome::of(&r));
        }
        r
    }

    async fn create_slice_placed(
        self: &Arc<Self>,
        p: &Principal,
        mut spec: SliceSpec,
    ) -> Result<(SliceView, Vec<String>)> {
        let who = p.user()?.clone();
        spec.validate(self.cfg.lease_max)?;
        // Pinned once, here: every sliver ever placed for this slice runs this digest.
        spec.image_digest = self.pin_image(p, &spec.image).await?;
        // Members are checked before the placement lock: reads never queue behind placement.
        {
            let mut c = self.db.conn().await?;
            for m in &spec.members {
                store::get_user(&mut c, m)
                    .await?
                    .ok_or_else(|| Error::not_found("user (member)", m.clone()))?;
            }
        }
        self.load_fleet().await?;
        let (done, answer) = oneshot::channel();
        self.creates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Job {
                who,
                actor: p.actor(),
                spec,
                done,
            });
        let core = self.clone();
        tokio::spawn(async move {
            let _guard = core.place_lock.lock().await;
            let batch =
                std::mem::take(&mut *core.creates.lock().unwrap_or_else(|p| p.into_inner()));
            if !batch.is_empty() {
                core.place_batch(batch).await;
            }
        });
        let Planned {
            slice,
            slivers,
            warnings,
        } = answer
            .await
            .map_err(|_| Error::Unavailable("placement was interrupted; try again".into()))??;
        // The answer comes from what was just written and the index, not from a re-read.
        let views = self.sliver_views(slivers);
        Ok((
            SliceView {
                slice,
                slivers: views,
            },
            warnings,
        ))
    }

    /// Plans and commits a group of creates (under the placement lock); answers each.
    async fn place_batch(&self, batch: Vec<Job>) {
        let mut planned: Vec<(Job, Planned)> = Vec::with_capacity(batch.len());
        for job in batch {
            let plan = if self
                .with_fleet(|f| f.name_taken(&job.spec.name))
                .unwrap_or(false)
            {
                Err(Error::AlreadyExists {
                    kind: "slice",
                    name: job.spec.name.clone(),
                })
            } else {
                self.plan_slice(&job.who, &job.spec)
            };
            match plan {
                Ok(p) => {
                    // Held at once, so the next request of the group sees it taken.
                    self.with_fleet(|f| take(f, &p));
                    planned.push((job, p));
                }
                Err(e) => {
                    let _ = job.done.send(Err(e));
                }
            }
        }
        if planned.is_empty() {
            return;
        }
        let committed = self.commit_group(&planned).await;
        if matches!(committed, Ok(true)) {
            for (job, p) in planned {
                self.push_slivers(&p);
                let _ = job.done.send(Ok(p));
            }
            return;
        }
        self.with_fleet(|f| planned.iter().for_each(|(_, p)| give_back(f, p)));
        if let (Err(e), 1) = (&committed, planned.len()) {
            tracing::debug!(error = %e, "create failed");
        }
        // One at a time: each gets its own outcome, and refusals are retried.
        for (job, _) in planned {
            let outcome = self.place_one(&job).await;
            if let Ok(p) = &outcome {
                self.push_slivers(p);
            }
            let _ = job.done.send(outcome);
        }
    }

    /// Plans and commits one create on its own, placing again when the database refuses what
    /// a stale index offered (another writer).
    async fn place_one(&self, job: &Job) -> Result<Planned> {
        let mut attempt = 0;
        loop {
            let planned = self.plan_slice(&job.who, &job.spec)?;
            let mut tx = self.db.begin().await?;
            match self.write_slice(&mut tx, &job.actor, &planned).await? {
                None => {
                    tx.commit().await?;
                    self.with_fleet(|f| take(f, &planned));
                    return Ok(planned);
                }
                Some(stale) => {
                    tx.rollback().await?;
                    attempt += 1;
                    tracing::warn!(node = %stale, attempt, "placement refused by the database; retrying");
                    self.refresh_node_locked(&stale).await?;
                    if attempt == CONFLICT_RETRIES {
                        return Err(Error::Unavailable(
                            "placement kept conflicting with another writer; try again".into(),
                        ));
                    }
                }
            }
        }
    }

    /// Commits a group in one transaction: `Ok(true)` when all of it is written, `Ok(false)`
    /// when the database refused a hold (nothing is written then).
    async fn commit_group(&self, group: &[(Job, Planned)]) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        for (job, p) in group {
            if self.write_slice(&mut tx, &job.actor, p).await?.is_some() {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Tells the nodes of a committed slice to run its slivers.
    fn push_slivers(&self, p: &Planned) {
        for v in &p.slivers {
            self.hub.send(
                &v.node,
                NodeCommand::Upsert(Box::new((p.slice.clone(), v.clone()))),
            );
        }
    }

    /// Sliver views with their node's address and whether it can be trusted, from the index.
    fn sliver_views(&self, slivers: Vec<Sliver>) -> Vec<SliverView> {
        let nodes: Vec<Option<Node>> = self
            .with_fleet(|f| {
                (slivers.iter())
                    .map(|v| f.node(&v.node).map(|h| h.node.clone()))
                    .collect()
            })
            .unwrap_or_else(|| vec![None; slivers.len()]);
        slivers
            .into_iter()
            .zip(nodes)
            .map(|(v, n)| {
                let (addr, blind) = match n {
                    Some(n) => {
                        let blind = self.node_blind(&n);
                        (n.address, blind)
                    }
                    None => (String::new(), false),
                };
                SliverView {
                    unknown: blind && v.state.is_live(),
                    node_address: addr,
                    sliver: v,
                }
            })
            .collect()
    }

    /// Decides where the slice goes, from the index alone (no I/O).
    fn plan_slice(&self, who: &User, spec: &SliceSpec) -> Result<Planned> {
        let pl = &spec.placement;
        let request = Request {
            count: if pl.per_site > 0 {
                Count::PerSite(pl.per_site)
            } else {
                Count::Total(pl.slivers)
            },
            sites: pl.sites.clone(),
            labels: pl.node_labels.clone(),
            resources: spec.resources,
            ports: spec.ports.len() as u32,
            strategy: pl.strategy,
            best_effort: pl.best_effort,
        };
        let home = who.site.clone().unwrap_or_default();
        let placed = self
            .with_fleet(|f| -> Result<Vec<Placement>> {
                let unknown: Vec<&str> = (pl.sites.iter())
                    .filter(|s| f.site(s).is_none())
                    .map(String::as_str)
                    .collect();
                if !unknown.is_empty() {
                    return Err(Error::invalid(format!(
                        "unknown site(s): {}",
                        unknown.join(", ")
                    )));
                }
                let quota = f.site(&home).map(|s| (s.max_slices, s.max_slivers));
                let (held_slices, held_slivers) = f.site_usage(&home);
                if let Some((max_slices, _)) = quota {
                    if max_slices > 0 && held_slices >= max_slices {
                        return Err(Error::Exhausted(format!(
                            "site {home} already holds {held_slices} of its {max_slices} live slices"
                        )));
                    }
                }
                let placed = self.place_in(f, &request)?;
                if let Some((_, max_slivers)) = quota {
                    if max_slivers > 0 && held_slivers + placed.len() as i64 > max_slivers {
                        return Err(Error::Exhausted(format!(
                            "site {home} holds {held_slivers} live slivers; {} more would pass its quota of {max_slivers}",
                            placed.len()
                        )));
                    }
                }
                Ok(placed)
            })
            .ok_or_else(|| Error::Unavailable("the fleet index is not loaded".into()))??;

        let mut warnings = Vec::new();
        let asked = match request.count {
            Count::Total(n) => Some(n as usize),
            Count::PerSite(k) if !pl.sites.is_empty() => Some(k as usize * pl.sites.len()),
            Count::PerSite(_) => None,
        };
        if let Some(asked) = asked.filter(|a| *a > placed.len()) {
            warnings.push(format!(
                "best effort: placed {} of {asked} slivers",
                placed.len()
            ));
        }
        let now = self.now_ms();
        let lease = spec
            .lease
            .unwrap_or(self.cfg.lease_default)
            .min(self.cfg.lease_max);
        let slice = Slice {
            id: uuid::Uuid::new_v4().to_string(),
            name: spec.name.clone(),
            owner: who.name.clone(),
            members: spec.members.clone(),
            description: spec.description.clone(),
            site: home,
            image: spec.image.clone(),
            image_digest: spec.image_digest.clone(),
            command: spec.command.clone(),
            env: spec.env.clone(),
            resources: spec.resources,
            ports: spec.ports.clone(),
            placement: spec.placement.clone(),
            restart_policy: spec.restart_policy,
            created_at: now,
            lease_expires_at: super::later(now, "lease", lease)?,
            life: SliceLife::Live,
            node_loss: spec.node_loss,
            // At most 7 days (validated), so it fits.
            replace_after_ms: i64::try_from(
                spec.replace_after
                    .unwrap_or(DEFAULT_REPLACE_AFTER)
                    .as_millis(),
            )
            .map_err(|_| Error::invalid("replace-after is too long"))?,
        };
        let slivers = placed
            .iter()
            .enumerate()
            .map(|(i, pm)| {
                let ports = (spec.ports.iter())
                    .zip(&pm.host_ports)
                    .map(|(np, hp)| AssignedPort {
                        name: np.name.clone(),
                        container_port: np.container_port,
                        host_port: *hp,
                    })
                    .collect();
                let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
                Sliver {
                    id: format!("{}-{i}-{suffix}", slice.name),
                    slice_id: slice.id.clone(),
                    slice: slice.name.clone(),
                    index: i as u32,
                    node: pm.node.clone(),
                    site: pm.site.clone(),
                    state: SliverState::Pending,
                    resources: spec.resources,
                    ports,
                    last_error: String::new(),
                    exit_code: None,
                    generation: 1,
                    created_at: now,
                    updated_at: now,
                }
            })
            .collect();
        Ok(Planned {
            slice,
            slivers,
            warnings,
        })
    }

    /// Writes a planned slice inside `tx`. `Some(node)` when the database refused what the
    /// plan holds on `node`: the caller must roll back.
    async fn write_slice(
        &self,
        tx: &mut store::Tx,
        actor: &str,
        planned: &Planned,
    ) -> Result<Option<String>> {
        let Planned { slice, slivers, .. } = planned;
        store::insert_slice(tx, slice).await?;
        for v in slivers {
            store::insert_sliver(tx, v).await?;
            if !store::hold(tx, v).await? {
                return Ok(Some(v.node.clone()));
            }
            store::append_event(
                tx,
                &NewEvent::new(
                    actor,
                    format!("sliver/{}", v.id),
                    "placed",
                    format!("on node {} ({})", v.node, v.site),
                )
                .in_slice(&slice.name, &slice.id),
            )
            .await?;
        }
        let site_list: BTreeSet<&str> = slivers.iter().map(|v| v.site.as_str()).collect();
        let lease =
            Duration::from_millis((slice.lease_expires_at - slice.created_at).max(0) as u64);
        store::append_event(
            tx,
            &NewEvent::new(
                actor,
                format!("slice/{}", slice.name),
                "created",
                format!(
                    "{} sliver(s) on {}; lease {}",
                    slivers.len(),
                    site_list.into_iter().collect::<Vec<_>>().join(", "),
                    days(lease)
                ),
            )
            .in_slice(&slice.name, &slice.id),
        )
        .await?;
        Ok(None)
    }

    /// Places `req` on the index: on the few nodes that matter, and on the whole fleet when
    /// that fails (so the refusal explains every node) or falls short of a best-effort ask.
    pub(super) fn place_in(&self, f: &Fleet, req: &Request) -> Result<Vec<Placement>> {
        let state = |n: &Node| self.unavailable(n);
        let (few, whole) = f.candidates_for(req, state);
        match scheduler::place(&few, req) {
            Ok(p) if whole || !req.best_effort || p.len() == wanted(req, &few) => Ok(p),
            Err(u) if whole => Err(Error::Exhausted(u.reason)),
            _ => scheduler::place(&f.all_candidates(state), req)
                .map_err(|u| Error::Exhausted(u.reason)),
        }
    }

    /// Why a node cannot take new slivers now (its site aside), from the core's liveness view.
    fn unavailable(&self, n: &Node) -> Option<Unavailable> {
        match self.node_state(n) {
            NodeState::Ready => None,
            NodeState::Unreachable => Some(Unavailable::Unreachable),
            NodeState::EngineDown => Some(Unavailable::EngineDown),
            NodeState::Draining => Some(Unavailable::Draining),
            NodeState::Disabled => Some(Unavailable::Disabled),
            NodeState::Enrolling => Some(Unavailable::Enrolling),
        }
    }

    /// Every node as the scheduler sees it (replacement and explanations).
    pub(super) fn all_candidates(&self) -> Vec<Candidate> {
        self.with_fleet(|f| f.all_candidates(|n| self.unavailable(n)))
            .unwrap_or_default()
    }
}

/// Holds a planned slice's slivers in the index and counts it for its site.
fn take(f: &mut Fleet, p: &Planned) {
    for v in &p.slivers {
        f.hold(v);
    }
    f.slice_added(
        &p.slice.id,
        &p.slice.name,
        &p.slice.site,
        p.slivers.len() as i64,
    );
}

/// Undoes `take` for a slice that was not committed.
fn give_back(f: &mut Fleet, p: &Planned) {
    for v in &p.slivers {
        f.release(v);
    }
    f.slice_ended(&p.slice.id);
}

/// How many slivers a request asks for on these candidates (per-site asks count their sites).
fn wanted(req: &Request, c: &[Candidate]) -> usize {
    match req.count {
        Count::Total(n) => n as usize,
        Count::PerSite(k) if !req.sites.is_empty() => k as usize * req.sites.len(),
        Count::PerSite(k) => {
            let sites: BTreeSet<&str> = c.iter().map(|c| c.site.as_str()).collect();
            k as usize * sites.len()
        }
    }
}
