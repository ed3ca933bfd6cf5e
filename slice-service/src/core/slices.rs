//! Slices: creation with placement, reading, leases, deletion, and the event log.

use std::collections::HashMap;
use std::time::Duration;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::NodeCommand;
use crate::model::{Event, NewEvent, Role, Slice, SliceLife, Sliver, User};
use crate::state::SliverState;
use crate::store::{self, Conn, EventFilter, SliceKey, SliceList, Viewer};

use super::spec::days;
use super::{Core, SliceView, SliverView};

/// The outcome of a renewal.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub view: SliceView,
    /// Set when less than asked was granted.
    pub note: String,
}

pub(super) fn can_view(u: &User, s: &Slice) -> bool {
    u.role == Role::Admin
        || s.owner == u.name
        || s.members.contains(&u.name)
        || (u.role == Role::Pi && u.site.as_deref() == Some(s.site.as_str()))
}

fn can_act(u: &User, s: &Slice) -> bool {
    u.role == Role::Admin || s.owner == u.name || s.members.contains(&u.name)
}

/// Which slices `u` may see, as the store asks it; the same rule as `can_view`.
fn viewer(u: &User) -> Viewer<'_> {
    match u.role {
        Role::Admin => Viewer::All,
        Role::Pi => Viewer::User {
            name: &u.name,
            pi_site: u.site.as_deref(),
        },
        Role::User => Viewer::User {
            name: &u.name,
            pi_site: None,
        },
    }
}

/// A page of slices: their views, and where the next page starts (None on the last).
#[derive(Debug, Clone, Default)]
pub struct SlicePage {
    pub views: Vec<SliceView>,
    pub next: Option<SliceKey>,
}

impl Core {
    pub(super) async fn view(&self, c: &mut Conn, slice: Slice) -> Result<SliceView> {
        self.views(c, vec![slice])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("a slice without its view".into()))
    }

    /// The views of these slices, in their order: their slivers in one query, their slivers'
    /// nodes in another, whatever their number (bounded chunks of IN lists).
    pub(super) async fn views(&self, c: &mut Conn, slices: Vec<Slice>) -> Result<Vec<SliceView>> {
        let ids: Vec<String> = slices.iter().map(|s| s.id.clone()).collect();
        let mut by_slice: HashMap<String, Vec<Sliver>> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        for v in store::slivers_of_slices(c, &ids).await? {
            names.push(v.node.clone());
            by_slice.entry(v.slice_id.clone()).or_default().push(v);
        }
        names.sort_unstable();
        names.dedup();
        let addrs: HashMap<String, (String, bool)> = store::nodes_named(c, &names)
            .await?
            .into_iter()
            .map(|n| {
                let blind = self.node_blind(&n);
                (n.name.clone(), (n.address, blind))
            })
            .collect();
        Ok(slices
            .into_iter()
            .map(|slice| {
                let slivers = by_slice
                    .remove(&slice.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| {
                        let (addr, unreachable) = addrs.get(&v.node).cloned().unwrap_or_default();
                        SliverView {
                            unknown: unreachable && v.state.is_live(),
                            sliver: v,
                            node_address: addr,
                        }
                    })
                    .collect();
                SliceView { slice, slivers }
            })
            .collect())
    }

    /// The slice of that name the caller may see: the live one, else the newest ended one.
    /// Names are reused, so each one that ever existed is considered on its own: a caller who
    /// may not see the live slice never gets its history, nor the reverse. One bounded query
    /// by the name's index, the visibility rule in it.
    async fn visible_slice(&self, c: &mut Conn, who: &User, name: &str) -> Result<Slice> {
        store::visible_slice(c, name, viewer(who))
            .await?
            .filter(|s| can_view(who, s))
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

    /// Slices the caller may see, by name (then creation), from `from` on (None: the first),
    /// at most `limit` (1 to `MAX_SLICE_PAGE`). Only what the caller may see is read: an
    /// admin's page is one range of an index; a user's, the slices they own or are a member of
    /// (and a PI's, their site's).
    pub async fn list_slices(
        &self,
        p: &Principal,
        include_ended: bool,
        site: &str,
        from: Option<SliceKey>,
        limit: usize,
    ) -> Result<SlicePage> {
        let who = p.user()?;
        let limit = limit.clamp(1, MAX_SLICE_PAGE);
        let mut c = self.db.conn().await?;
        let mut slices = store::list_visible_slices(
            &mut c,
            &SliceList {
                viewer: viewer(who),
                include_ended,
                site: (!site.is_empty()).then_some(site),
                from: from.unwrap_or_else(SliceKey::first),
                limit: limit as i64 + 1,
            },
        )
        .await?;
        let next = if slices.len() > limit {
            slices.truncate(limit + 1);
            slices.pop().map(|s| SliceKey::of(&s))
        } else {
            None
        };
        // The store's rule and this one are the same; a slice only one of them lets through
        // would be a bug, and it fails closed.
        slices.retain(|s| can_view(who, s));
        Ok(SlicePage {
            views: self.views(&mut c, slices).await?,
            next,
        })
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
        self.with_fleet(|f| f.slice_ended(&s.id));
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

/// Most slices one `list_slices` call reads.
const MAX_SLICE_PAGE: usize = 500;

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

#[cfg(test)]
mod tests {
    use super::super::tests::{spec, TestBed};
    use super::*;

    /// Every slice there is, with members, by key.
    async fn everything(bed: &TestBed) -> Vec<Slice> {
        let mut c = bed.core.db.conn().await.unwrap();
        store::list_visible_slices(
            &mut c,
            &SliceList {
                viewer: Viewer::All,
                include_ended: true,
                site: None,
                from: SliceKey::first(),
                limit: 10_000,
            },
        )
        .await
        .unwrap()
    }

    /// All pages of a listing, `limit` slices at a time: the slice ids in order.
    async fn all_pages(
        bed: &TestBed,
        p: &Principal,
        include_ended: bool,
        site: &str,
        limit: usize,
    ) -> Vec<String> {
        let (mut out, mut from) = (Vec::new(), None);
        for _ in 0..100 {
            let page = bed
                .core
                .list_slices(p, include_ended, site, from, limit)
                .await
                .unwrap();
            assert!(page.views.len() <= limit);
            out.extend(page.views.iter().map(|v| v.slice.id.clone()));
            match page.next {
                Some(k) => from = Some(k),
                None => return out,
            }
        }
        panic!("listing never ended");
    }

    #[tokio::test]
    async fn listing_reads_what_the_caller_may_see_page_by_page_and_nothing_else() {
        let mut bed = TestBed::new().await;
        bed.site("mit").await.site("eth").await;
        bed.node("n1", "mit", 64_000, 1 << 36).await;
        bed.node("n2", "eth", 64_000, 1 << 36).await;
        let alice = bed.user("alice", "mit").await;
        let bob = bed.user("bob", "mit").await;
        let carl = bed.user("carl", "eth").await;
        let mut pis = Vec::new();
        for (name, site) in [("paula", "mit"), ("pete", "eth")] {
            let (u, _, _) = bed
                .core
                .create_user(&bed.admin, name, Role::Pi, Some(site.into()), None)
                .await
                .unwrap();
            pis.push(Principal::User(u));
        }
        let with = |name: &str, members: &[&str]| {
            let mut s = spec(name, 1);
            s.members = members.iter().map(|m| m.to_string()).collect();
            s
        };
        let create = |p: &Principal, s| {
            let core = bed.core.clone();
            let p = p.clone();
            async move { core.create_slice(&p, s).await.unwrap() }
        };
        create(&alice, with("a1", &["bob"])).await;
        create(&alice, with("a2", &[])).await;
        create(&bob, with("b1", &[])).await;
        create(&carl, with("c1", &["alice"])).await;
        create(&carl, with("c2", &[])).await;
        // A name used by bob, ended, then by alice; another ended for good.
        create(&bob, with("x", &["carl"])).await;
        bed.core.delete_slice(&bob, "x").await.unwrap();
        create(&alice, with("x", &[])).await;
        create(&carl, with("gone", &[])).await;
        bed.core.delete_slice(&carl, "gone").await.unwrap();
        for i in 0..7 {
            create(&bob, with(&format!("m{i}"), &["alice"])).await;
        }

        let all = everything(&bed).await;
        assert_eq!(all.len(), 15);
        let mut viewers = vec![bed.admin.clone(), alice, bob, carl];
        viewers.extend(pis);
        for p in &viewers {
            let who = p.user().unwrap();
            for include_ended in [false, true] {
                for site in ["", "mit", "eth"] {
                    let want: Vec<String> = all
                        .iter()
                        .filter(|s| can_view(who, s))
                        .filter(|s| include_ended || s.life == SliceLife::Live)
                        .filter(|s| site.is_empty() || s.site == site)
                        .map(|s| s.id.clone())
                        .collect();
                    for limit in [1, 2, 3, 500] {
                        let got = all_pages(&bed, p, include_ended, site, limit).await;
                        assert_eq!(
                            got, want,
                            "{} ended {include_ended} site {site:?} by {limit}",
                            who.name
                        );
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_listed_slice_has_its_members_and_slivers() {
        let mut bed = TestBed::new().await;
        bed.site("mit").await;
        bed.node("n1", "mit", 64_000, 1 << 36).await;
        bed.node("n2", "mit", 64_000, 1 << 36).await;
        let alice = bed.user("alice", "mit").await;
        bed.user("bob", "mit").await;
        let mut s = spec("two", 2);
        s.members = vec!["bob".into()];
        bed.core.create_slice(&alice, s).await.unwrap();
        bed.core.create_slice(&alice, spec("one", 1)).await.unwrap();
        let page = bed
            .core
            .list_slices(&alice, false, "", None, 10)
            .await
            .unwrap();
        let got: Vec<(&str, Vec<String>, usize)> = page
            .views
            .iter()
            .map(|v| {
                (
                    v.slice.name.as_str(),
                    v.slice.members.clone(),
                    v.slivers.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("one", vec![], 1), ("two", vec!["bob".to_string()], 2)]
        );
        let one = bed.core.get_slice(&alice, "two").await.unwrap();
        assert_eq!(
            one.slivers
                .iter()
                .map(|v| v.sliver.index)
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(one.slivers.iter().all(|v| !v.node_address.is_empty()));
        for (v, w) in one.slivers.iter().zip(&page.views[1].slivers) {
            assert_eq!(v.sliver.id, w.sliver.id);
            assert_eq!(v.node_address, w.node_address);
        }
    }

    #[tokio::test]
    async fn a_reused_name_shows_each_caller_only_the_slice_they_may_see() {
        let mut bed = TestBed::new().await;
        bed.site("mit").await.site("eth").await;
        bed.node("n1", "mit", 64_000, 1 << 36).await;
        let bob = bed.user("bob", "mit").await;
        let carl = bed.user("carl", "eth").await;
        let dora = bed.user("dora", "eth").await;
        let (pi, _, _) = bed
            .core
            .create_user(&bed.admin, "paula", Role::Pi, Some("mit".into()), None)
            .await
            .unwrap();
        let pi = Principal::User(pi);
        let (old, _) = bed.core.create_slice(&bob, spec("x", 1)).await.unwrap();
        bed.core.delete_slice(&bob, "x").await.unwrap();
        let (new, _) = bed.core.create_slice(&carl, spec("x", 1)).await.unwrap();
        let id = |p: &Principal| {
            let core = bed.core.clone();
            let p = p.clone();
            async move { core.get_slice(&p, "x").await.map(|v| v.slice.id) }
        };
        assert_eq!(id(&bob).await.unwrap(), old.slice.id);
        assert_eq!(id(&carl).await.unwrap(), new.slice.id);
        assert_eq!(id(&bed.admin).await.unwrap(), new.slice.id);
        // The PI of mit sees mit's ended slice, not eth's live one.
        assert_eq!(id(&pi).await.unwrap(), old.slice.id);
        assert!(matches!(id(&dora).await, Err(Error::NotFound { .. })));
    }
}
