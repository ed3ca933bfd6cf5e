//! The service side of the node API: enrollment, connection, observed state.
//!
//! A node is who its client certificate says (`pki.rs`), and only while the certificate's
//! serial is recorded here for it and not revoked. What a node says about itself is bounded:
//! capacity above what it enrolled with is capped (with an event), an address change is an
//! event, and its labels are set by admins and PIs, never by the node after enrollment.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::EngineChange;
use crate::model::{AdminState, NewEvent, Node, Slice, SliceLife, Sliver};
use crate::names;
use crate::pki::{IssuedCert, PeerCert};
use crate::state::SliverState;
use crate::store::{self, Conn};
use crate::untrusted::{bounded, DETAIL_MAX, LABEL_MAX};
use slicebed_units::Resources;

use super::{Core, NodeView};

/// Most unexpired certificates a node may hold at once (renewals beyond are refused).
const MAX_LIVE_CERTS: i64 = 4;

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

pub(super) fn validate_report(h: &NodeHello) -> Result<()> {
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
    validate_labels(&h.labels)
}

pub(super) fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > 64 {
        return Err(Error::invalid("at most 64 labels"));
    }
    for (k, v) in labels {
        let bad = |c: char| c.is_control() || c == '=' || c == ',';
        if k.is_empty() || k.len() > 63 || v.len() > 255 || k.contains(bad) || v.contains(bad) {
            return Err(Error::invalid(format!("label {k:?} is invalid")));
        }
    }
    Ok(())
}

/// `reported`, capped to `enrolled` in every dimension.
fn capped(reported: Resources, enrolled: Resources) -> Resources {
    Resources::new(
        reported.cpu_millis.min(enrolled.cpu_millis),
        reported.memory_bytes.min(enrolled.memory_bytes),
        reported.disk_bytes.min(enrolled.disk_bytes),
    )
}

impl Core {
    /// Exchanges a one-time enrollment token for a node and its client certificate, which
    /// `issue` signs for the (validated) node name; its serial is recorded in the same
    /// transaction. A name already enrolled may enroll again (same site; slivers kept) only
    /// after an admin revoked its identity, or if it never had a certificate (enrolled with a
    /// bearer credential before mutual TLS).
    pub async fn enroll(
        &self,
        p: &Principal,
        h: NodeHello,
        issue: impl FnOnce(&str) -> Result<IssuedCert>,
    ) -> Result<(Node, IssuedCert)> {
        let h = printable_hello(h);
        let Principal::Enroll { token_id, site } = p else {
            return Err(Error::denied("enrollment needs a node enrollment token"));
        };
        names::dns_label("node name", &h.name)?;
        validate_report(&h)?;
        let cert = issue(&h.name)?;
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
        let address = if h.address.is_empty() {
            "127.0.0.1".to_string()
        } else {
            h.address.clone()
        };
        let (node, action) = match store::get_node(&mut tx, &h.name).await? {
            None => {
                let node = Node {
                    name: h.name.clone(),
                    site: site.clone(),
                    address,
                    capacity: h.capacity,
                    port_first: h.port_first,
                    port_last: h.port_last,
                    labels: h.labels.clone(),
                    admin_state: AdminState::Active,
                    agent_version: h.agent_version.clone(),
                    last_heartbeat: None,
                    created_at: now,
                    drain_deadline: None,
                    cluster: None,
                };
                store::insert_node(&mut tx, &node).await?;
                (node, "enrolled")
            }
            Some(mut old) => {
                let revoked = store::node_identity(&mut tx, &old.name)
                    .await?
                    .is_some_and(|i| i.revoked_at.is_some());
                let legacy = !store::has_certs(&mut tx, &old.name).await?;
                // A cluster's member is the cluster agent's to speak for, never a node's.
                if old.site != *site || !(revoked || legacy) || old.cluster.is_some() {
                    return Err(Error::AlreadyExists {
                        kind: "node",
                        name: old.name,
                    });
                }
                // Labels stay as admins set them; the rest is what the node enrolls with now.
                old.address = address;
                old.capacity = h.capacity;
                old.port_first = h.port_first;
                old.port_last = h.port_last;
                old.agent_version = h.agent_version.clone();
                store::update_node_report(&mut tx, &old).await?;
                (old, "re-enrolled")
            }
        };
        // Certificates of an earlier node of this name never come back to life.
        store::revoke_certs(&mut tx, &node.name, now).await?;
        store::set_node_identity(&mut tx, &node.name, node.capacity).await?;
        store::insert_cert(
            &mut tx,
            &cert.serial,
            &node.name,
            cert.issued_at,
            cert.expires_at,
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("node/{}", node.name),
                action,
                format!(
                    "site {site}, {}; certificate {} valid for {}s",
                    node.capacity,
                    cert.serial,
                    (cert.expires_at - now).max(0) / 1000
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        // A re-enrolled node keeps what its slivers hold: read it again; a new one holds nothing.
        match action {
            "enrolled" => self.node_written(node.clone()),
            _ => self.refresh_node(&node.name).await?,
        }
        Ok((node, cert))
    }

    /// Who a client certificate speaks for: its node, if the certificate is one the service
    /// issued to that node, unexpired and not revoked.
    pub async fn node_by_cert(&self, peer: &PeerCert) -> Result<Node> {
        let mut c = self.db.conn().await?;
        let rec = store::get_cert(&mut c, &peer.serial).await?;
        let Some(rec) = rec.filter(|r| r.node == peer.node) else {
            return Err(Error::Unauthenticated(format!(
                "certificate {} was not issued to node {} by this service",
                peer.serial, peer.node
            )));
        };
        if rec.revoked_at.is_some() {
            return Err(Error::Unauthenticated(format!(
                "node {}'s identity was revoked: enroll it again with a new enrollment token \
                 (node-manager enroll --force)",
                peer.node
            )));
        }
        if rec.expires_at <= self.now_ms() {
            return Err(Error::Unauthenticated(format!(
                "node {}'s certificate has expired: enroll it again",
                peer.node
            )));
        }
        store::get_node(&mut c, &peer.node)
            .await?
            .ok_or_else(|| Error::Unauthenticated(format!("node {} no longer exists", peer.node)))
    }

    /// Renews a connected node's certificate (signed by `issue`) unless its identity was
    /// revoked; the new serial is recorded before the certificate is handed out.
    pub async fn renew_node_cert(
        &self,
        node: &str,
        issue: impl FnOnce(&str) -> Result<IssuedCert>,
    ) -> Result<IssuedCert> {
        let mut tx = self.db.begin().await?;
        let revoked = store::node_identity(&mut tx, node)
            .await?
            .is_none_or(|i| i.revoked_at.is_some());
        if revoked || store::get_node(&mut tx, node).await?.is_none() {
            return Err(Error::Unauthenticated(format!(
                "node {node}'s identity was revoked: it must enroll again"
            )));
        }
        // A node renews at 2/3 of a certificate's life, so it holds two at most; more means
        // it asks in a loop, and each answer would be another row and another valid key pair.
        let live = store::prune_certs(&mut tx, node, self.now_ms()).await?;
        if live >= MAX_LIVE_CERTS {
            return Err(Error::Exhausted(format!(
                "node {node} already holds {live} unexpired certificates; ask again when one expires"
            )));
        }
        let cert = issue(node)?;
        store::insert_cert(&mut tx, &cert.serial, node, cert.issued_at, cert.expires_at).await?;
        tx.commit().await?;
        tracing::info!(node, serial = %cert.serial, "node certificate renewed");
        Ok(cert)
    }

    /// Revokes a node's identity: every certificate it holds stops working, its control
    /// channel is dropped now, renewals fail, and it must enroll again. Its slivers stay (an
    /// admin drains or deletes the node for that).
    pub async fn revoke_node(&self, p: &Principal, name: &str) -> Result<NodeView> {
        let who = p.user()?;
        let now = self.now_ms();
        let mut tx = self.db.begin().await?;
        let n = store::get_node(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("node", name))?;
        if !crate::auth::may_manage_site(who, &n.site) {
            return Err(Error::denied(format!(
                "{} may not manage node {name} of site {}",
                who.name, n.site
            )));
        }
        let certs = store::revoke_certs(&mut tx, name, now).await?;
        if store::node_identity(&mut tx, name).await?.is_none() {
            store::set_node_identity(&mut tx, name, n.capacity).await?;
        }
        store::revoke_identity(&mut tx, name, now).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("node/{name}"),
                "identity revoked",
                format!("{certs} certificate(s) revoked; the node must enroll again"),
            ),
        )
        .await?;
        tx.commit().await?;
        self.hub.kick(name);
        self.get_node(p, name).await
    }

    /// Sets and removes a node's labels (admins, or PIs of its site).
    pub async fn label_node(
        &self,
        p: &Principal,
        name: &str,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<NodeView> {
        let who = p.user()?;
        let mut tx = self.db.begin().await?;
        let mut n = store::get_node(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("node", name))?;
        if !crate::auth::may_manage_site(who, &n.site) {
            return Err(Error::denied(format!(
                "{} may not manage node {name} of site {}",
                who.name, n.site
            )));
        }
        for k in &remove {
            n.labels.remove(k);
        }
        n.labels.extend(set);
        validate_labels(&n.labels)?;
        store::set_node_labels(&mut tx, name, &n.labels).await?;
        let text: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("node/{name}"),
                "labels set",
                text.join(","),
            ),
        )
        .await?;
        tx.commit().await?;
        self.refresh_node(name).await?;
        self.get_node(p, name).await
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
        let h = printable_hello(h);
        let blind = engine.is_some();
        validate_report(&h)?;
        let mut tx = self.db.begin().await?;
        let mut n = store::get_node(&mut tx, node)
            .await?
            .ok_or_else(|| Error::not_found("node", node))?;
        let me = format!("node/{node}");
        let mut notes: Vec<(&str, String)> = Vec::new();
        if !h.address.is_empty() && h.address != n.address {
            notes.push((
                "address changed",
                format!("from {} to {}", n.address, h.address),
            ));
            n.address = h.address;
        }
        // Labels are the admins' (h.labels is ignored); capacity is bounded by enrollment.
        let enrolled = store::node_identity(&mut tx, node)
            .await?
            .map_or(n.capacity, |i| i.enrolled);
        let bounded = capped(h.capacity, enrolled);
        if bounded != h.capacity {
            notes.push((
                "capacity capped",
                format!(
                    "the node reported {}, more than the {} it enrolled with; it offers {}",
                    h.capacity, enrolled, bounded
                ),
            ));
        }
        n.capacity = bounded;
        n.port_first = h.port_first;
        n.port_last = h.port_last;
        n.agent_version = h.agent_version;
        n.last_heartbeat = Some(self.now_ms());
        store::update_node_report(&mut tx, &n).await?;
        store::append_event(&mut tx, &NewEvent::new(&me, me.clone(), "connected", "")).await?;
        for (action, detail) in notes {
            tracing::warn!(node, action, %detail, "node report bounded");
            store::append_event(&mut tx, &NewEvent::new(&me, me.clone(), action, detail)).await?;
        }

        let seen: HashSet<&str> = observed.iter().map(|o| o.sliver_id.as_str()).collect();
        let mut desired = Vec::new();
        let mut slices: HashMap<String, Slice> = HashMap::new();
        let mut released = Vec::new();
        for v in store::slivers_on_node(&mut tx, node).await? {
            if v.state == SliverState::Stopping && !blind && !seen.contains(v.id.as_str()) {
                // The node has no container for it: the removal is complete.
                released.extend(
                    self.set_sliver_state(&mut tx, node, v, SliverState::Deleted, "", None)
                        .await?,
                );
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
            released.extend(self.apply_status_in(&mut tx, node, o).await?);
        }
        tx.commit().await?;
        self.released(&released);
        self.node_written(n.clone());
        self.engine_reported(node, engine).await?;
        Ok((n, desired))
    }

    /// Records the engine health a connected node reports (`None`: it answers), with an event
    /// when it changes. Soft state: after a service restart the next report rebuilds it.
    pub async fn engine_reported(&self, node: &str, engine: Option<(String, i64)>) -> Result<()> {
        // The node's words reach `slicectl node list` and the log: escaped and bounded first.
        let engine = engine.map(|(m, since)| (bounded(&m, DETAIL_MAX), since));
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
        let released = self.apply_status_in(&mut tx, node, o).await?;
        tx.commit().await?;
        self.released(released.as_slice());
        Ok(())
    }

    /// Committed deletions give back what the slivers held in the fleet index.
    pub(super) fn released(&self, slivers: &[Sliver]) {
        if !slivers.is_empty() {
            self.with_fleet(|f| slivers.iter().for_each(|v| f.release(v)));
        }
    }

    /// Applies one observed status inside `tx`; returns the sliver if it is now deleted.
    async fn apply_status_in(
        &self,
        tx: &mut Conn,
        node: &str,
        o: ObservedStatus,
    ) -> Result<Option<Sliver>> {
        let Some(v) = store::get_sliver(tx, &o.sliver_id).await? else {
            tracing::debug!(node, sliver = %o.sliver_id, "status for an unknown sliver ignored");
            return Ok(None);
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
            return Ok(None);
        }
        // A live sliver's container vanishing is repaired by the node itself; only a stopping
        // sliver may end deleted on a node's word.
        if o.state == SliverState::Deleted && v.state.is_live() {
            return Ok(None);
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
    ) -> Result<Option<Sliver>> {
        // A node's words are shown to researchers: escaped and bounded before they are kept.
        let message = &crate::untrusted::bounded(message, crate::untrusted::DETAIL_MAX);
        if v.state == to
            && v.last_error == *message
            && (exit_code.is_none() || v.exit_code == exit_code)
        {
            return Ok(None);
        }
        let from = v.state;
        if v.move_to(to, self.now_ms()).is_err() {
            tracing::debug!(sliver = %v.id, from = from.as_str(), to = to.as_str(), "stale report ignored");
            return Ok(None);
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
        let released = next == SliverState::Deleted && from != SliverState::Deleted;
        if released {
            store::release(tx, &v).await?;
        }
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
        Ok(released.then_some(v))
    }

    /// A second control channel for a connected node was refused: written as an event.
    pub async fn second_channel_refused(&self, node: &str, peer: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("node/{node}"),
                format!("node/{node}"),
                "second control channel refused",
                format!("from {peer}, while its control channel is open"),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A node's control channel closed.
    pub async fn node_disconnected(&self, node: &str) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.db.begin().await?;
        store::set_last_heartbeat(&mut tx, node, now).await?;
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
        self.with_fleet(|f| f.set_last_heartbeat(node, now));
        Ok(())
    }
}

/// What a node says about itself, escaped and bounded before anyone stores or prints it: the
/// agent version is shown by `slicectl node list`, and a terminal escape there would run in
/// an admin's terminal.
pub(super) fn printable_hello(mut h: NodeHello) -> NodeHello {
    h.agent_version = bounded(&h.agent_version, LABEL_MAX);
    h
}
