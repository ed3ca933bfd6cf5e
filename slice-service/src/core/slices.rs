//! Slices: creation with placement, reading, leases, deletion, and the event log.

use std::collections::HashMap;
use std::time::Duration;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::NodeCommand;
use crate::model::{Event, NewEvent, Role, Slice, SliceLife, Sliver, User};
use crate::state::SliverState;
use crate::store::{self, Conn, EventFilter};

use super::spec::days;
use super::{Core, SliceView, SliverView};

/// The outcome of a renewal.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub view: SliceView,
    /// Set when less than asked was granted.
    pub note: String,
}

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
    pub(super) async fn view(&self, c: &mut Conn, slice: Slice) -> Result<SliceView> {
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
