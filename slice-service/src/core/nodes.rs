//! The service side of the node API: enrollment, connection, observed state.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::EngineChange;
use crate::model::{AdminState, NewEvent, Node, Slice, SliceLife, Sliver, TokenKind};
use crate::names;
use crate::state::SliverState;
use crate::store::{self, Conn};
use slicebed_units::Resources;

use super::admin::issue_token;
use super::Core;

/// What a node says about itself when it enrolls or connects.
#[derive(Debug, Clone, Default)]
pub struct NodeHello {
    pub name: String,
    pub address: String,
    pub capacity: Resources,
    pub port_first: u32,
    pub port_last: u32,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
}

/// A sliver's state as a node observed it.
#[derive(Debug, Clone)]
pub struct ObservedStatus {
    pub sliver_id: String,
    pub state: SliverState,
    pub message: String,
    pub exit_code: Option<i32>,
}

fn validate_report(h: &NodeHello) -> Result<()> {
    let c = h.capacity;
    if c.cpu_millis <= 0 || c.memory_bytes <= 0 || c.disk_bytes < 0 {
        return Err(Error::invalid(format!(
            "node capacity must be positive (got {c})"
        )));
    }
    if h.port_first == 0 || h.port_first > h.port_last || h.port_last > 65535 {
        return Err(Error::invalid(format!(
            "port range {}-{} is invalid",
            h.port_first, h.port_last
        )));
    }
    names::text("address", &h.address, 255)?;
    if h.labels.len() > 64 {
        return Err(Error::invalid("at most 64 labels"));
    }
    for (k, v) in &h.labels {
        if k.is_empty() || k.len() > 63 || v.len() > 255 {
            return Err(Error::invalid(format!("label {k:?} is invalid")));
        }
    }
    Ok(())
}

impl Core {
    /// Exchanges a one-time enrollment token for a node and its credential.
    pub async fn enroll(&self, p: &Principal, h: NodeHello) -> Result<(Node, String)> {
        let Principal::Enroll { token_id, site } = p else {
            return Err(Error::denied("enrollment needs a node enrollment token"));
        };
        names::dns_label("node name", &h.name)?;
        validate_report(&h)?;
        let now = self.now_ms();
        let mut tx = self.db.begin().await?;
        store::get_site(&mut tx, site)
            .await?
            .ok_or_else(|| Error::not_found("site", site.clone()))?;
        if !store::consume_token(&mut tx, token_id, now).await? {
            return Err(Error::Unauthenticated(
                "enrollment token has already been used".into(),
            ));
        }
        let node = Node {
            name: h.name.clone(),
            site: site.clone(),
            address: if h.address.is_empty() {
                "127.0.0.1".into()
            } else {
                h.address.clone()
            },
            capacity: h.capacity,
            port_first: h.port_first,
            port_last: h.port_last,
            labels: h.labels.clone(),
            admin_state: AdminState::Active,
            agent_version: h.agent_version.clone(),
            last_heartbeat: None,
            created_at: now,
            drain_deadline: None,
        };
        store::insert_node(&mut tx, &node).await?;
        let (secret, _) = issue_token(
            &mut tx,
            TokenKind::Node,
            &node.name,
            "node credential",
            None,
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("node/{}", node.name),
                "enrolled",
                format!("site {site}, {}", node.capacity),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((node, secret))
    }

    /// A node opened its control channel: record what it reports, settle what it observes,
    /// and return the full set of slivers it must run. With its engine down (`engine`: the
    /// node's words and since when) it observes nothing, so nothing is settled on its word.
    pub async fn node_connected(
        &self,
        node: &str,
        h: NodeHello,
        observed: Vec<ObservedStatus>,
        engine: Option<(String, i64)>,
    ) -> Result<(Node, Vec<(Slice, Sliver)>)> {
        let blind = engine.is_some();
        validate_report(&h)?;
        let mut tx = self.db.begin().await?;
        let mut n = store::get_node(&mut tx, node)
            .await?
            .ok_or_else(|| Error::not_found("node", node))?;
        if !h.address.is_empty() {
            n.address = h.address;
        }
        if !h.labels.is_empty() {
            n.labels = h.labels;
        }
        n.capacity = h.capacity;
        n.port_first = h.port_first;
        n.port_last = h.port_last;
        n.agent_version = h.agent_version;
        n.last_heartbeat = Some(self.now_ms());
        store::update_node_report(&mut tx, &n).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("node/{node}"),
                format!("node/{node}"),
                "connected",
                "",
            ),
        )
        .await?;

        let seen: HashSet<&str> = observed.iter().map(|o| o.sliver_id.as_str()).collect();
        let mut desired = Vec::new();
        let mut slices: HashMap<String, Slice> = HashMap::new();
        for v in store::slivers_on_node(&mut tx, node).await? {
            if v.state == SliverState::Stopping && !blind && !seen.contains(v.id.as_str()) {
                // The node has no container for it: the removal is complete.
                self.set_sliver_state(&mut tx, node, v, SliverState::Deleted, "", None)
                    .await?;
                continue;
            }
            if !v.state.is_live() {
                continue;
            }
            if !slices.contains_key(&v.slice_id) {
                if let Some(s) = store::slice_by_id(&mut tx, &v.slice_id).await? {
                    slices.insert(v.slice_id.clone(), s);
                }
            }
            match slices.get(&v.slice_id) {
                Some(s) if s.life == SliceLife::Live => desired.push((s.clone(), v)),
                _ => {}
            }
        }
        for o in observed {
            self.apply_status_in(&mut tx, node, o).await?;
        }
        tx.commit().await?;
        self.engine_reported(node, engine).await?;
        Ok((n, desired))
    }

    /// Records the engine health a connected node reports (`None`: it answers), with an event
    /// when it changes. Soft state: after a service restart the next report rebuilds it.
    pub async fn engine_reported(&self, node: &str, engine: Option<(String, i64)>) -> Result<()> {
        let Some(change) = self.hub.set_engine(node, engine) else {
            return Ok(());
        };
        let (action, message) = match change {
            EngineChange::Lost { message } => (
                "engine unavailable",
                format!("{message}; its slivers show unknown and it takes no new ones until the engine answers"),
            ),
            EngineChange::Back { away } => (
                "engine available",
                format!("after {:.1}s", away.as_secs_f64()),
            ),
        };
        tracing::warn!(node, action, %message, "container engine");
        let mut tx = self.db.begin().await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("node/{node}"),
                format!("node/{node}"),
                action,
                message,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies one observed status from `node`.
    pub async fn apply_status(&self, node: &str, o: ObservedStatus) -> Result<()> {
        let mut tx = self.db.begin().await?;
        self.apply_status_in(&mut tx, node, o).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply_status_in(&self, tx: &mut Conn, node: &str, o: ObservedStatus) -> Result<()> {
        let Some(v) = store::get_sliver(tx, &o.sliver_id).await? else {
            tracing::debug!(node, sliver = %o.sliver_id, "status for an unknown sliver ignored");
            return Ok(());
        };
        if v.node != node {
            // A node credential speaks only for its own node.
            tracing::warn!(node, sliver = %v.id, owner = %v.node, "node reported a sliver of another node; ignored");
            store::append_event(
                tx,
                &NewEvent::new(
                    &format!("node/{node}"),
                    format!("sliver/{}", v.id),
                    "report refused",
                    format!("sliver belongs to node {}", v.node),
                ),
            )
            .await?;
            return Ok(());
        }
        // A live sliver's container vanishing is repaired by the node itself; only a stopping
        // sliver may end deleted on a node's word.
        if o.state == SliverState::Deleted && v.state.is_live() {
            return Ok(());
        }
        self.set_sliver_state(tx, node, v, o.state, &o.message, o.exit_code)
            .await
    }

    async fn set_sliver_state(
        &self,
        tx: &mut Conn,
        node: &str,
        mut v: Sliver,
        to: SliverState,
        message: &str,
        exit_code: Option<i32>,
    ) -> Result<()> {
        // A node's words are shown to researchers: escaped and bounded before they are kept.
        let message = &crate::untrusted::bounded(message, crate::untrusted::DETAIL_MAX);
        if v.state == to
            && v.last_error == *message
            && (exit_code.is_none() || v.exit_code == exit_code)
        {
            return Ok(());
        }
        let from = v.state;
        if v.move_to(to, self.now_ms()).is_err() {
            tracing::debug!(sliver = %v.id, from = from.as_str(), to = to.as_str(), "stale report ignored");
            return Ok(());
        }
        let next = v.state;
        let changed = next != from;
        if !message.is_empty() || matches!(next, SliverState::Running) {
            v.last_error = message.to_string();
        }
        if exit_code.is_some() {
            v.exit_code = exit_code;
        }
        store::update_sliver_state(tx, &v).await?;
        if changed || !message.is_empty() {
            store::append_event(
                tx,
                &NewEvent::new(
                    &format!("node/{node}"),
                    format!("sliver/{}", v.id),
                    format!("state {}", next.as_str()),
                    message,
                )
                .in_slice(&v.slice, &v.slice_id),
            )
            .await?;
        }
        Ok(())
    }

    /// A node's control channel closed.
    pub async fn node_disconnected(&self, node: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        store::set_last_heartbeat(&mut tx, node, self.now_ms()).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("node/{node}"),
                format!("node/{node}"),
                "disconnected",
                "",
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
