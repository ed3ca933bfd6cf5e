//! A cluster's members: created on their first Hello in the cluster's site, their Kubernetes
//! cordon mirrored in their administrative state, and removed when their Node leaves empty. Who may speak for a member is
//! `clusters.rs`'s question; this only records what an authenticated member says.

use crate::error::{Error, Result};
use crate::model::{AdminState, NewEvent, Node};
use crate::store;

use super::nodes::{printable_hello, validate_report, NodeHello};
use super::Core;

impl Core {
    /// A member says Hello for the first time: its node is created in the cluster's site with
    /// what it reports (the cluster's port range). Nothing happens if it exists already.
    pub async fn member_joined(&self, cluster: &str, node: &str, h: NodeHello) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let k = store::get_cluster(&mut tx, cluster)
            .await?
            .ok_or_else(|| Error::not_found("cluster", cluster))?;
        let mut h = printable_hello(h);
        h.port_first = k.port_first;
        h.port_last = k.port_last;
        validate_report(&h)?;
        if store::get_node(&mut tx, node).await?.is_some() {
            return Ok(());
        }
        let n = Node {
            name: node.to_string(),
            site: k.site.clone(),
            address: if h.address.is_empty() {
                "127.0.0.1".into()
            } else {
                h.address
            },
            capacity: h.capacity,
            port_first: k.port_first,
            port_last: k.port_last,
            labels: h.labels,
            admin_state: AdminState::Active,
            agent_version: h.agent_version,
            last_heartbeat: None,
            created_at: self.now_ms(),
            drain_deadline: None,
            cluster: Some(cluster.to_string()),
        };
        super::nodes::validate_labels(&n.labels)?;
        store::insert_node(&mut tx, &n).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("cluster/{cluster}"),
                format!("node/{node}"),
                "joined",
                format!(
                    "member of cluster {cluster}, site {}, {}",
                    k.site, n.capacity
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        self.node_written(n);
        Ok(())
    }

    /// A member's Kubernetes node was cordoned (or uncordoned) in the cluster: an active member
    /// becomes disabled (no new slivers, existing ones stay), a disabled one active again. A
    /// draining member stays draining. Returns the member's administrative state after.
    pub async fn member_cordoned(
        &self,
        cluster: &str,
        node: &str,
        cordoned: bool,
    ) -> Result<AdminState> {
        let mut tx = self.db.begin().await?;
        let Some(n) = store::get_node(&mut tx, node).await? else {
            return Err(Error::not_found("node", node));
        };
        let (to, action) = match (n.admin_state, cordoned) {
            (AdminState::Active, true) => (AdminState::Disabled, "cordoned in the cluster"),
            (AdminState::Disabled, false) => (AdminState::Active, "uncordoned in the cluster"),
            (s, _) => return Ok(s),
        };
        store::set_admin_state(&mut tx, node, to, None).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &format!("cluster/{cluster}"),
                format!("node/{node}"),
                action,
                format!(
                    "its Kubernetes node is {}; the node is {}",
                    if cordoned {
                        "unschedulable"
                    } else {
                        "schedulable"
                    },
                    to.as_str()
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        self.refresh_node(node).await?;
        Ok(to)
    }

    /// A member's Kubernetes node was deleted from the cluster: the member is removed if it
    /// holds no live sliver (slivers still stopping there are done: nothing will confirm
    /// them); otherwise it stays, to show unreachable and have its slivers handled as a lost
    /// node's, until an admin deletes it. Returns whether it was removed.
    pub async fn member_left(&self, cluster: &str, node: &str) -> Result<bool> {
        let now = self.now_ms();
        let mut tx = self.db.begin().await?;
        if store::get_node(&mut tx, node).await?.is_none() {
            return Ok(false);
        }
        let slivers = store::slivers_on_node(&mut tx, node).await?;
        let live = slivers.iter().filter(|v| v.state.is_live()).count();
        let actor = format!("cluster/{cluster}");
        let object = format!("node/{node}");
        if live > 0 {
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    &actor,
                    object,
                    "left the cluster",
                    format!(
                        "its Kubernetes node was deleted; it keeps {live} live sliver(s) and \
                         shows unreachable until they are re-placed or deleted"
                    ),
                ),
            )
            .await?;
            tx.commit().await?;
            return Ok(false);
        }
        for mut v in slivers
            .into_iter()
            .filter(|v| v.state == crate::state::SliverState::Stopping)
        {
            v.move_to(crate::state::SliverState::Deleted, now)?;
            store::update_sliver_state(&mut tx, &v).await?;
            store::release(&mut tx, &v).await?;
        }
        store::delete_node(&mut tx, node).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &actor,
                object,
                "left the cluster",
                "its Kubernetes node was deleted; the member is removed",
            ),
        )
        .await?;
        tx.commit().await?;
        self.hub.forget(node);
        self.refresh_node(node).await?;
        Ok(true)
    }
}
