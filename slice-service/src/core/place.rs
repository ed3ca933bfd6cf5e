//! Placement: a new slice's slivers are chosen from the fleet and committed with the slice,
//! all or nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::NodeCommand;
use crate::model::{AssignedPort, NewEvent, NodeState, Slice, SliceLife, Sliver};
use crate::scheduler::{self, Candidate, Count, Unavailable};
use crate::state::SliverState;
use crate::store::{self, Conn};

use super::spec::days;
use super::{Core, SliceSpec, SliceView};

/// Grace period before slivers of a lost node are re-placed, unless the slice says otherwise.
const DEFAULT_REPLACE_AFTER: Duration = Duration::from_secs(300);

impl Core {
    /// Places and records a slice; capacity is committed in the same transaction.
    pub async fn create_slice(
        &self,
        p: &Principal,
        mut spec: SliceSpec,
    ) -> Result<(SliceView, Vec<String>)> {
        let who = p.user()?.clone();
        spec.validate(self.cfg.lease_max)?;
        let lease = spec
            .lease
            .unwrap_or(self.cfg.lease_default)
            .min(self.cfg.lease_max);
        let now = self.now_ms();

        let _guard = self.place_lock.lock().await;
        let mut tx = self.db.begin().await?;
        for m in &spec.members {
            store::get_user(&mut tx, m)
                .await?
                .ok_or_else(|| Error::not_found("user (member)", m.clone()))?;
        }
        let sites = store::list_sites(&mut tx).await?;
        let unknown: Vec<&str> = spec
            .placement
            .sites
            .iter()
            .filter(|s| !sites.iter().any(|x| &x.name == *s))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Error::invalid(format!(
                "unknown site(s): {}",
                unknown.join(", ")
            )));
        }
        let home = who.site.clone().unwrap_or_default();
        let quota = sites
            .iter()
            .find(|s| s.name == home)
            .map(|s| (s.max_slices, s.max_slivers));
        let (held_slices, held_slivers) = if home.is_empty() {
            (0, 0)
        } else {
            store::site_usage(&mut tx, &home).await?
        };
        if let Some((max_slices, _)) = quota {
            if max_slices > 0 && held_slices >= max_slices {
                return Err(Error::Exhausted(format!(
                    "site {home} already holds {held_slices} of its {max_slices} live slices"
                )));
            }
        }

        let candidates = self.candidates(&mut tx, &sites).await?;
        let pl = &spec.placement;
        let request = scheduler::Request {
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
        let placed =
            scheduler::place(&candidates, &request).map_err(|u| Error::Exhausted(u.reason))?;

        if let Some((_, max_slivers)) = quota {
            if max_slivers > 0 && held_slivers + placed.len() as i64 > max_slivers {
                return Err(Error::Exhausted(format!(
                    "site {home} holds {held_slivers} live slivers; {} more would pass its quota of {max_slivers}",
                    placed.len()
                )));
            }
        }
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

        let slice = Slice {
            id: uuid::Uuid::new_v4().to_string(),
            name: spec.name.clone(),
            owner: who.name.clone(),
            members: spec.members.clone(),
            description: spec.description.clone(),
            site: home,
            image: spec.image.clone(),
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
        store::insert_slice(&mut tx, &slice).await?;
        let actor = p.actor();
        let mut slivers = Vec::with_capacity(placed.len());
        for (i, pm) in placed.iter().enumerate() {
            let ports = spec
                .ports
                .iter()
                .zip(&pm.host_ports)
                .map(|(np, hp)| AssignedPort {
                    name: np.name.clone(),
                    container_port: np.container_port,
                    host_port: *hp,
                })
                .collect();
            let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
            let v = Sliver {
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
            };
            store::insert_sliver(&mut tx, &v).await?;
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    &actor,
                    format!("sliver/{}", v.id),
                    "placed",
                    format!("on node {} ({})", v.node, v.site),
                )
                .in_slice(&slice.name, &slice.id),
            )
            .await?;
            slivers.push(v);
        }
        let site_list: BTreeSet<&str> = placed.iter().map(|p| p.site.as_str()).collect();
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &actor,
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
        tx.commit().await?;
        drop(_guard);

        for v in slivers {
            self.hub.send(
                &v.node.clone(),
                NodeCommand::Upsert(Box::new((slice.clone(), v))),
            );
        }
        let mut c = self.db.conn().await?;
        Ok((self.view(&mut c, slice).await?, warnings))
    }

    /// Every node as the scheduler sees it: capacity, what live slivers hold, availability.
    /// Read inside the placement transaction, under the placement lock.
    pub(super) async fn candidates(
        &self,
        tx: &mut Conn,
        sites: &[crate::model::Site],
    ) -> Result<Vec<Candidate>> {
        let nodes = store::list_nodes(&mut *tx, None).await?;
        let usage = store::node_usage(&mut *tx).await?;
        Ok(nodes
            .iter()
            .map(|n| {
                let u = usage.get(&n.name).cloned().unwrap_or_default();
                let site_enabled = sites.iter().any(|s| s.name == n.site && s.enabled);
                let unavailable = match self.node_state(n) {
                    _ if !site_enabled => Some(Unavailable::SiteDisabled),
                    NodeState::Ready => None,
                    NodeState::Unreachable => Some(Unavailable::Unreachable),
                    NodeState::EngineDown => Some(Unavailable::EngineDown),
                    NodeState::Draining => Some(Unavailable::Draining),
                    NodeState::Disabled => Some(Unavailable::Disabled),
                    NodeState::Enrolling => Some(Unavailable::Enrolling),
                };
                Candidate {
                    node: n.name.clone(),
                    site: n.site.clone(),
                    capacity: n.capacity,
                    allocated: u.allocated,
                    port_first: n.port_first,
                    port_last: n.port_last,
                    used_ports: u.ports,
                    labels: n.labels.clone(),
                    unavailable,
                    slivers: u.slivers,
                }
            })
            .collect())
    }
}
