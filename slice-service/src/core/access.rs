//! Who may reach into which sliver, and the endpoint directory. The byte relays live in
//! `api::sessions`; this decides and records.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::{NewEvent, Sliver};
use crate::store;

use super::Core;

/// A named port of a sliver, resolved to where it can be reached.
#[derive(Debug, Clone)]
pub struct ResolvedEndpoint {
    pub sliver: Sliver,
    pub name: String,
    pub address: String,
    pub port: u32,
    pub container_port: u32,
    /// The sliver's node is unreachable.
    pub unknown: bool,
}

impl Core {
    /// The running sliver `index` of `slice` if the caller may act on it (owner, member, admin)
    /// and its node is connected. Writes one event naming who, which sliver and `what`.
    pub async fn access_target(
        &self,
        p: &Principal,
        slice: &str,
        index: u32,
        action: &str,
        what: &str,
    ) -> Result<Sliver> {
        let who = p.user()?.clone();
        let mut c = self.db.conn().await?;
        let s = self.actionable_slice(&mut c, &who, slice).await?;
        let v = store::slivers_of_slice(&mut c, &s.id)
            .await?
            .into_iter()
            .filter(|v| v.index == index)
            // A replaced sliver keeps its index; the live copy is the one to reach.
            .max_by_key(|v| (v.state.is_live(), v.created_at))
            .ok_or_else(|| Error::not_found("sliver", format!("{slice}/{index}")))?;
        drop(c);
        if !v.state.is_live() {
            return Err(Error::Precondition(format!(
                "sliver {slice}/{index} is {}",
                v.state.as_str()
            )));
        }
        if !self.hub.is_connected(&v.node) {
            return Err(Error::Unavailable(format!(
                "node {} of sliver {slice}/{index} is not connected; try again when it is back",
                v.node
            )));
        }
        let mut tx = self.db.begin().await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(&p.actor(), format!("sliver/{}", v.id), action, what)
                .in_slice(&s.name, &s.id),
        )
        .await?;
        tx.commit().await?;
        Ok(v)
    }

    /// The directory service: where each sliver's named ports can be reached.
    pub async fn resolve_endpoints(
        &self,
        p: &Principal,
        slice: &str,
        port: &str,
    ) -> Result<Vec<ResolvedEndpoint>> {
        let view = self.get_slice(p, slice).await?;
        if !port.is_empty() && !view.slice.ports.iter().any(|np| np.name == port) {
            let names: Vec<&str> = view.slice.ports.iter().map(|np| np.name.as_str()).collect();
            return Err(Error::not_found(
                "port",
                format!("{port} (slice {slice} declares: {})", names.join(", ")),
            ));
        }
        let mut out = Vec::new();
        for v in view.slivers.iter().filter(|v| v.sliver.state.is_live()) {
            for ap in v
                .sliver
                .ports
                .iter()
                .filter(|ap| port.is_empty() || ap.name == port)
            {
                out.push(ResolvedEndpoint {
                    sliver: v.sliver.clone(),
                    name: ap.name.clone(),
                    address: v.node_address.clone(),
                    port: ap.host_port,
                    container_port: ap.container_port,
                    unknown: v.unknown,
                });
            }
        }
        Ok(out)
    }
}
