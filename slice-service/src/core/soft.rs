//! Soft-state sweeps: lease warnings, re-placing slivers of lost or draining nodes, and drain
//! deadlines. Each sweep reads the database afresh and is idempotent, so a crash between two
//! sweeps loses nothing; each change is one transaction with its events.

use std::time::Duration;

use crate::error::Result;
use crate::hub::NodeCommand;
use crate::model::{AdminState, NewEvent, Node, NodeLossPolicy, Slice, SliceLife, Sliver};
use crate::scheduler::{self, Count, Strategy};
use crate::state::SliverState;
use crate::store;

use super::Core;

/// How long before a lease ends its owner is warned in the event log.
const LEASE_WARNING: Duration = Duration::from_secs(24 * 3600);

impl Core {
    /// Writes one "lease ends soon" event per live slice within a day of its end.
    pub async fn warn_leases(&self) -> Result<()> {
        let horizon = self
            .now_ms()
            .saturating_add(LEASE_WARNING.as_millis() as i64);
        let due = store::slices_to_warn(&mut *self.db.conn().await?, horizon).await?;
        for s in due {
            let left = Duration::from_millis((s.lease_expires_at - self.now_ms()).max(0) as u64);
            let mut tx = self.db.begin().await?;
            store::mark_lease_warned(&mut tx, &s.id).await?;
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    "system",
                    format!("slice/{}", s.name),
                    "lease ends soon",
                    format!(
                        "in {}h{}m; renew with slicectl slice renew {}",
                        left.as_secs() / 3600,
                        left.as_secs() % 3600 / 60,
                        s.name
                    ),
                )
                .in_slice(&s.name, &s.id),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// How long a node has been lost (silent, or its engine not answering), or None while it
    /// is fine, with the words for why.
    fn lost_for(&self, n: &Node) -> Option<(Duration, &'static str)> {
        if let Some(d) = self.hub.engine_down(&n.name) {
            return Some((
                self.clock.instant().saturating_duration_since(d.noticed),
                "without a container engine for",
            ));
        }
        self.silent_for(n).map(|d| (d, "unreachable for"))
    }

    /// How long a node has been silent, or None while it is live.
    fn silent_for(&self, n: &Node) -> Option<Duration> {
        if self.hub.is_live(&n.name) {
            return None;
        }
        self.hub.silent_for(&n.name).or_else(|| {
            n.last_heartbeat
                .map(|t| Duration::from_millis((self.now_ms() - t).max(0) as u64))
        })
    }

    /// Re-places "replace" slivers of lost nodes after their grace period and of draining nodes
    /// at once, and removes what a passed drain deadline ends.
    ///
    /// Which nodes to look at comes from the fleet index and the hub, in memory: the database
    /// is read only for nodes that are draining or lost and still hold slivers.
    pub async fn handle_lost_and_draining(&self) -> Result<()> {
        self.load_fleet().await?;
        let nodes: Vec<Node> = self
            .with_fleet(|f| {
                f.nodes()
                    .filter(|h| h.slivers > 0 || h.node.admin_state == AdminState::Draining)
                    .filter(|h| {
                        h.node.admin_state == AdminState::Draining
                            || self.lost_for(&h.node).is_some()
                    })
                    .map(|h| h.node.clone())
                    .collect()
            })
            .unwrap_or_default();
        for n in nodes {
            let draining = n.admin_state == AdminState::Draining;
            let lost = self.lost_for(&n);
            let slivers = store::live_slivers_on_node(&mut *self.db.conn().await?, &n.name).await?;
            for v in &slivers {
                let Some(slice) =
                    store::slice_by_id(&mut *self.db.conn().await?, &v.slice_id).await?
                else {
                    continue;
                };
                if slice.life != SliceLife::Live || slice.node_loss != NodeLossPolicy::Replace {
                    continue;
                }
                let grace = Duration::from_millis(slice.replace_after_ms.max(0) as u64);
                let reason = if draining {
                    format!("node {} is draining", n.name)
                } else if let Some((_, why)) = lost.filter(|(d, _)| *d >= grace) {
                    format!("node {} {why} more than {}s", n.name, grace.as_secs())
                } else {
                    continue;
                };
                self.replace_sliver(&slice, v, &reason).await?;
            }
            if draining && n.drain_deadline.is_some_and(|d| d <= self.now_ms()) {
                self.end_drain(&n).await?;
            }
        }
        Ok(())
    }

    /// Places a new copy of `old` elsewhere and retires `old`, in one transaction.
    async fn replace_sliver(&self, slice: &Slice, old: &Sliver, reason: &str) -> Result<()> {
        let _guard = self.place_lock.lock().await;
        let mut tx = self.db.begin().await?;
        let mut retired = match store::get_sliver(&mut tx, &old.id).await? {
            Some(cur) if cur.state.is_live() && cur.node == old.node => cur,
            _ => return Ok(()),
        };
        let candidates: Vec<_> = self
            .all_candidates()
            .into_iter()
            .filter(|c| c.node != old.node)
            .collect();
        let request = scheduler::Request {
            count: Count::Total(1),
            sites: slice.placement.sites.clone(),
            labels: slice.placement.node_labels.clone(),
            resources: old.resources,
            ports: old.ports.len() as u32,
            strategy: Strategy::Spread,
            best_effort: false,
        };
        let placed = match scheduler::place(&candidates, &request) {
            Ok(p) => p,
            Err(u) => {
                let first = self
                    .blocked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(old.id.clone());
                if first {
                    store::append_event(
                        &mut tx,
                        &NewEvent::new(
                            "system",
                            format!("sliver/{}", old.id),
                            "replacement pending",
                            format!("{reason}; {}", u.reason),
                        )
                        .in_slice(&slice.name, &slice.id),
                    )
                    .await?;
                    tx.commit().await?;
                }
                return Ok(());
            }
        };
        let pm = &placed[0];
        let now = self.now_ms();
        let ports = old
            .ports
            .iter()
            .zip(&pm.host_ports)
            .map(|(p, hp)| crate::model::AssignedPort {
                host_port: *hp,
                ..p.clone()
            })
            .collect();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let new = Sliver {
            id: format!("{}-{}-{suffix}", slice.name, old.index),
            node: pm.node.clone(),
            site: pm.site.clone(),
            state: SliverState::Pending,
            ports,
            last_error: String::new(),
            exit_code: None,
            generation: 1,
            created_at: now,
            updated_at: now,
            ..old.clone()
        };
        retired.move_to(SliverState::Stopping, now)?;
        store::update_sliver_state(&mut tx, &retired).await?;
        store::insert_sliver(&mut tx, &new).await?;
        if !store::hold(&mut tx, &new).await? {
            // The index was behind the database: read the node again; the next sweep retries.
            tx.rollback().await?;
            return self.refresh_node_locked(&new.node).await;
        }
        store::append_event(
            &mut tx,
            &NewEvent::new(
                "system",
                format!("sliver/{}", old.id),
                "replaced",
                format!(
                    "by {} on node {} ({}): {reason}",
                    new.id, new.node, new.site
                ),
            )
            .in_slice(&slice.name, &slice.id),
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                "system",
                format!("sliver/{}", new.id),
                "placed",
                format!("on node {} ({}) replacing {}", new.node, new.site, old.id),
            )
            .in_slice(&slice.name, &slice.id),
        )
        .await?;
        tx.commit().await?;
        self.with_fleet(|f| {
            f.hold(&new);
            f.sliver_added(&slice.id);
        });
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&old.id);
        tracing::info!(old = %old.id, new = %new.id, node = %new.node, reason, "sliver replaced");
        self.hub.send(
            &new.node.clone(),
            NodeCommand::Upsert(Box::new((slice.clone(), new))),
        );
        // If the old node is still connected (draining) it removes its copy now; if it is lost,
        // its desired set on reconnect no longer holds the sliver: one copy survives.
        self.hub
            .send(&old.node, NodeCommand::Remove(old.id.clone()));
        Ok(())
    }

    /// A drain deadline passed: the node's remaining slivers are removed.
    async fn end_drain(&self, n: &Node) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let left = store::live_slivers_on_node(&mut tx, &n.name).await?;
        if left.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        for v in &left {
            let mut v = v.clone();
            v.move_to(SliverState::Stopping, now)?;
            v.last_error = format!("removed: node {} drain deadline passed", n.name);
            store::update_sliver_state(&mut tx, &v).await?;
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    "system",
                    format!("sliver/{}", v.id),
                    "state stopping",
                    v.last_error.clone(),
                )
                .in_slice(&v.slice, &v.slice_id),
            )
            .await?;
        }
        store::append_event(
            &mut tx,
            &NewEvent::new(
                "system",
                format!("node/{}", n.name),
                "drain deadline",
                format!("{} sliver(s) removed", left.len()),
            ),
        )
        .await?;
        tx.commit().await?;
        for v in left {
            self.hub.send(&n.name, NodeCommand::Remove(v.id));
        }
        Ok(())
    }
}
