//! Slices: creation with placement, reading, leases, deletion, and the event log.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::NodeCommand;
use crate::model::{
    AssignedPort, Event, NewEvent, NodeState, Role, Slice, SliceLife, Sliver, User,
};
use crate::scheduler::{self, Candidate, Count, Unavailable};
use crate::state::SliverState;
use crate::store::{self, Conn, EventFilter};

use super::spec::days;
use super::{Core, SliceSpec, SliceView, SliverView};

/// The outcome of a renewal.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub view: SliceView,
    /// Set when less than asked was granted.
    pub note: String,
}

/// Grace period before slivers of a lost node are re-placed, unless the slice says otherwise.
const DEFAULT_REPLACE_AFTER: Duration = Duration::from_secs(300);

fn can_view(u: &User, s: &Slice) -> bool {
    u.role == Role::Admin
        || s.owner == u.name
        || s.members.contains(&u.name)
        || (u.role == Role::Pi && u.site.as_deref() == Some(s.site.as_str()))
}

fn can_act(u: &User, s: &Slice) -> bool {
    u.role == Role::Admin || s.owner == u.name || s.members.contains(&u.name)
}

impl Core {
    async fn view(&self, c: &mut Conn, slice: Slice) -> Result<SliceView> {
        let slivers = store::slivers_of_slice(c, &slice.id).await?;
        let mut addrs: HashMap<String, (String, bool)> = HashMap::new();
        let mut out = Vec::with_capacity(slivers.len());
        for v in slivers {
            if !addrs.contains_key(&v.node) {
                let entry = match store::get_node(c, &v.node).await? {
                    Some(n) => {
                        let blind = self.node_blind(&n);
                        (n.address, blind)
                    }
                    None => (String::new(), false),
                };
                addrs.insert(v.node.clone(), entry);
            }
            let (addr, unreachable) = addrs[&v.node].clone();
            let unknown = unreachable && v.state.is_live();
            out.push(SliverView {
                sliver: v,
                node_address: addr,
                unknown,
            });
        }
        Ok(SliceView {
            slice,
            slivers: out,
        })
    }

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

    /// The slice of that name the caller may see: the live one, else the newest ended one.
    /// Names are reused, so each one that ever existed is considered on its own: a caller who
    /// may not see the live slice never gets its history, nor the reverse.
    async fn visible_slice(&self, c: &mut Conn, who: &User, name: &str) -> Result<Slice> {
        store::slices_named(c, name)
            .await?
            .into_iter()
            .find(|s| can_view(who, s))
            // The same answer whether it does not exist or is someone else's: names leak nothing.
            .ok_or_else(|| Error::not_found("slice", name))
    }

    pub(super) async fn actionable_slice(
        &self,
        c: &mut Conn,
        who: &User,
        name: &str,
    ) -> Result<Slice> {
        let s = match store::live_slice(c, name).await? {
            Some(s) if can_view(who, &s) => s,
            _ => return Err(Error::not_found("slice", name)),
        };
        if !can_act(who, &s) {
            return Err(Error::denied(format!(
                "only the owner and members of slice {name} may change it"
            )));
        }
        Ok(s)
    }

    /// One slice the caller may see.
    pub async fn get_slice(&self, p: &Principal, name: &str) -> Result<SliceView> {
        let who = p.user()?;
        let mut c = self.db.conn().await?;
        let s = self.visible_slice(&mut c, who, name).await?;
        self.view(&mut c, s).await
    }

    /// Slices the caller may see.
    pub async fn list_slices(
        &self,
        p: &Principal,
        include_ended: bool,
        site: &str,
    ) -> Result<Vec<SliceView>> {
        let who = p.user()?;
        let mut c = self.db.conn().await?;
        let all = store::list_slices(&mut c, include_ended).await?;
        let mut out = Vec::new();
        for s in all
            .into_iter()
            .filter(|s| can_view(who, s) && (site.is_empty() || s.site == site))
        {
            out.push(self.view(&mut c, s).await?);
        }
        Ok(out)
    }

    /// Sets a slice's lease to `asked` from now, capped at the maximum.
    pub async fn renew_slice(
        &self,
        p: &Principal,
        name: &str,
        asked: Option<Duration>,
    ) -> Result<Renewed> {
        let who = p.user()?.clone();
        let asked = asked.unwrap_or(self.cfg.lease_default);
        if asked.is_zero() {
            return Err(Error::invalid("lease must be positive"));
        }
        let granted = asked.min(self.cfg.lease_max);
        let note = if granted < asked {
            format!(
                "granted {} instead of {}: leases are at most {}",
                days(granted),
                days(asked),
                days(self.cfg.lease_max)
            )
        } else {
            String::new()
        };
        let mut tx = self.db.begin().await?;
        let mut s = self.actionable_slice(&mut tx, &who, name).await?;
        s.lease_expires_at = super::later(self.now_ms(), "duration", granted)?;
        store::set_lease(&mut tx, &s.id, s.lease_expires_at).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("slice/{name}"),
                "renewed",
                format!("lease {}", days(granted)),
            )
            .in_slice(name, &s.id),
        )
        .await?;
        let view = self.view(&mut tx, s).await?;
        tx.commit().await?;
        // Nodes enforce leases on their own, so they learn the new end too.
        for v in &view.slivers {
            if v.sliver.state.is_live() {
                self.hub.send(
                    &v.sliver.node,
                    NodeCommand::Upsert(Box::new((view.slice.clone(), v.sliver.clone()))),
                );
            }
        }
        Ok(Renewed { view, note })
    }

    /// Deletes a slice: it ends now, its slivers go to stopping and their nodes are told.
    pub async fn delete_slice(&self, p: &Principal, name: &str) -> Result<()> {
        let who = p.user()?.clone();
        let mut tx = self.db.begin().await?;
        let s = self.actionable_slice(&mut tx, &who, name).await?;
        let stopped = self
            .end_slice(&mut tx, &s, SliceLife::Deleted, &p.actor())
            .await?;
        tx.commit().await?;
        for v in stopped {
            self.hub.send(&v.node, NodeCommand::Remove(v.id));
        }
        Ok(())
    }

    /// Ends a slice inside `tx`; returns the slivers whose nodes must remove them.
    pub(super) async fn end_slice(
        &self,
        tx: &mut Conn,
        s: &Slice,
        life: SliceLife,
        actor: &str,
    ) -> Result<Vec<Sliver>> {
        let now = self.now_ms();
        store::end_slice(tx, &s.id, life, now).await?;
        let mut stopped = Vec::new();
        for mut v in store::slivers_of_slice(tx, &s.id).await? {
            if !v.state.can_stop() {
                continue;
            }
            v.move_to(SliverState::Stopping, now)?;
            store::update_sliver_state(tx, &v).await?;
            store::append_event(
                tx,
                &NewEvent::new(actor, format!("sliver/{}", v.id), "state stopping", "")
                    .in_slice(&s.name, &s.id),
            )
            .await?;
            stopped.push(v);
        }
        store::append_event(
            tx,
            &NewEvent::new(actor, format!("slice/{}", s.name), life.as_str(), "")
                .in_slice(&s.name, &s.id),
        )
        .await?;
        Ok(stopped)
    }

    /// Id of the newest event.
    pub async fn latest_event_id(&self) -> Result<i64> {
        store::max_event_id(&mut *self.db.conn().await?).await
    }

    /// Events the caller may see.
    pub async fn list_events(
        &self,
        p: &Principal,
        object: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        Ok(self
            .list_events_page(p, object, after_id, 0, limit)
            .await?
            .events)
    }

    /// Which events `object` names for the caller ('' for the caller's own), or NotFound /
    /// PermissionDenied. `ListEvents` and `WatchEvents` both read through it.
    pub(super) async fn event_filter(
        &self,
        c: &mut Conn,
        p: &Principal,
        object: &str,
    ) -> Result<EventFilter> {
        let who = p.user()?;
        let mut f = EventFilter::default();
        if let Some(name) = object.strip_prefix("slice/") {
            // By id: the name may have belonged to someone else before.
            let s = self.visible_slice(c, who, name).await?;
            f.slice_id = Some(s.id);
        } else if object.is_empty() {
            if who.role != Role::Admin {
                f.actor = Some(p.actor());
            }
        } else if who.role == Role::Admin
            || object.starts_with("node/")
            || object.starts_with("site/")
            || object == format!("user/{}", who.name)
        {
            f.object = Some(object.to_string());
        } else {
            return Err(Error::denied(format!(
                "{} may not read the events of {object}",
                who.name
            )));
        }
        Ok(f)
    }

    /// Events the caller may see, newest `limit` (at most 1000) after `after_id` and before
    /// `before_id` (0: no bound), oldest first, cut so that the page stays under
    /// `EVENT_PAGE_BYTES` whatever the events hold.
    pub async fn list_events_page(
        &self,
        p: &Principal,
        object: &str,
        after_id: i64,
        before_id: i64,
        limit: u32,
    ) -> Result<EventPage> {
        let mut c = self.db.conn().await?;
        let f = EventFilter {
            after_id,
            before_id: before_id.max(0),
            limit: if limit == 0 { 100 } else { limit.min(1000) } as i64,
            ..self.event_filter(&mut c, p, object).await?
        };
        let mut events = store::list_events(&mut c, &f).await?;
        // Keep the newest that fit; the caller asks again with before_id for older ones.
        let mut size = 0usize;
        let keep = events
            .iter()
            .rev()
            .take_while(|e| {
                size += event_size(e);
                size <= EVENT_PAGE_BYTES
            })
            .count();
        let truncated = keep < events.len();
        events.drain(..events.len() - keep);
        Ok(EventPage { events, truncated })
    }
}

/// Largest encoded size of one ListEvents page: well under the 4 MiB clients decode by default.
pub const EVENT_PAGE_BYTES: usize = 1 << 20;

/// A page of events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Older matching events were left off to keep the page under `EVENT_PAGE_BYTES`.
    pub truncated: bool,
}

/// An upper bound of an event's encoded size: its text plus fixed-size fields and framing.
fn event_size(e: &Event) -> usize {
    e.actor.len() + e.object.len() + e.action.len() + e.detail.len() + 64
}
