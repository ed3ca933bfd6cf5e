//! Cluster agents: one agent, one cluster certificate, speaking for every node of a
//! Kubernetes cluster. The agent names the member it speaks for on each call; the member is
//! the Slicebed node `<cluster>-<member>` of the cluster's site, created on its first Hello
//! and recorded as the cluster's. A cluster certificate never speaks for a plain node nor for
//! another cluster's member, and a node certificate never speaks for a member.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::{NewEvent, Node};
use crate::names;
use crate::pki::{IssuedCert, PeerCert};
use crate::store::{self, Cluster};

use super::nodes::{validate_report, NodeHello};
use super::{Core, NodeView};

/// Longest cluster name: members are named `<cluster>-<member>` within a 63-char DNS label.
pub const CLUSTER_NAME_MAX: usize = 30;

/// Most unexpired certificates a cluster may hold at once.
const MAX_LIVE_CLUSTER_CERTS: i64 = 4;

/// Who a node API call speaks for, once its certificate and member name are checked.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// The Slicebed node.
    pub node: String,
    /// The cluster speaking for it, if a cluster agent.
    pub cluster: Option<String>,
    /// The node's record; `None` for a member that has not said Hello yet.
    pub existing: Option<Node>,
}

/// The Slicebed node name of Kubernetes node `member` of `cluster`: `<cluster>-<member>`,
/// with the dots of a DNS-subdomain node name turned into dashes.
pub fn member_node_name(cluster: &str, member: &str) -> Result<String> {
    let name = format!("{cluster}-{}", member.replace('.', "-"));
    if member.is_empty() || names::dns_label("member node name", &name).is_err() {
        return Err(Error::invalid(format!(
            "member {member:?} of cluster {cluster} cannot be a node: its name {name:?} must be \
             a DNS label of at most 63 lowercase letters, digits or '-'"
        )));
    }
    Ok(name)
}

impl Core {
    /// Exchanges a one-time enrollment token for a cluster of the token's site and its
    /// certificate (signed by `issue`). A name already enrolled may enroll again (same site;
    /// members kept) only after an admin revoked it.
    pub async fn enroll_cluster(
        &self,
        p: &Principal,
        name: &str,
        ports: (u32, u32),
        issue: impl FnOnce(&str) -> Result<IssuedCert>,
    ) -> Result<(Cluster, IssuedCert)> {
        let Principal::Enroll { token_id, site } = p else {
            return Err(Error::denied("enrollment needs a node enrollment token"));
        };
        names::dns_label("cluster name", name)?;
        if name.len() > CLUSTER_NAME_MAX {
            return Err(Error::invalid(format!(
                "cluster name {name:?} is too long: at most {CLUSTER_NAME_MAX} characters, so \
                 that its members' names (<cluster>-<node>) fit in 63"
            )));
        }
        validate_report(&NodeHello {
            capacity: slicebed_units::Resources::new(1, 1, 0),
            port_first: ports.0,
            port_last: ports.1,
            ..Default::default()
        })?;
        let cert = issue(name)?;
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
        let action = match store::get_cluster(&mut tx, name).await? {
            Some(old) if old.site != *site || old.revoked_at.is_none() => {
                return Err(Error::AlreadyExists {
                    kind: "cluster",
                    name: name.to_string(),
                })
            }
            Some(_) => "cluster re-enrolled",
            None => "cluster enrolled",
        };
        let cluster = Cluster {
            name: name.to_string(),
            site: site.clone(),
            port_first: ports.0,
            port_last: ports.1,
            created_at: now,
            revoked_at: None,
        };
        store::put_cluster(&mut tx, &cluster).await?;
        store::revoke_cluster_certs(&mut tx, name, now).await?;
        store::insert_cluster_cert(&mut tx, &cert.serial, name, cert.issued_at, cert.expires_at)
            .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("cluster/{name}"),
                action,
                format!(
                    "site {site}; certificate {} valid for {}s",
                    cert.serial,
                    (cert.expires_at - now).max(0) / 1000
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((cluster, cert))
    }

    /// Who a client certificate speaks for, with the member the call names (the
    /// `x-slicebed-member` metadata), if any.
    pub async fn speaker(&self, peer: &PeerCert, member: Option<&str>) -> Result<Speaker> {
        if !peer.cluster {
            if member.is_some() {
                return Err(Error::denied(format!(
                    "node {}'s certificate speaks only for that node: naming a member \
                     (x-slicebed-member) needs a cluster certificate",
                    peer.node
                )));
            }
            let node = self.node_by_cert(peer).await?;
            return Ok(Speaker {
                node: node.name.clone(),
                cluster: None,
                existing: Some(node),
            });
        }
        let cluster = self.cluster_by_cert(peer).await?;
        let Some(member) = member else {
            return Err(Error::invalid(format!(
                "cluster {}'s certificate speaks only for its members: name the member in \
                 the x-slicebed-member metadata",
                cluster.name
            )));
        };
        let name = member_node_name(&cluster.name, member)?;
        let existing = store::get_node(&mut *self.db.conn().await?, &name).await?;
        if let Some(n) = &existing {
            if n.cluster.as_deref() != Some(cluster.name.as_str()) {
                let owner = n
                    .cluster
                    .as_deref()
                    .map_or_else(|| "no cluster".to_string(), |c| format!("cluster {c}"));
                return Err(Error::denied(format!(
                    "node {name} belongs to {owner}: cluster {} may not speak for it",
                    cluster.name
                )));
            }
        }
        Ok(Speaker {
            node: name,
            cluster: Some(cluster.name),
            existing,
        })
    }

    /// The cluster a cluster certificate speaks for, if issued by this service to it,
    /// unexpired, and neither it nor its cluster revoked.
    async fn cluster_by_cert(&self, peer: &PeerCert) -> Result<Cluster> {
        let mut c = self.db.conn().await?;
        let rec = store::get_cluster_cert(&mut c, &peer.serial).await?;
        let Some(rec) = rec.filter(|r| r.cluster == peer.node) else {
            return Err(Error::Unauthenticated(format!(
                "certificate {} was not issued to cluster {} by this service",
                peer.serial, peer.node
            )));
        };
        let cluster = store::get_cluster(&mut c, &rec.cluster).await?;
        let revoked =
            rec.revoked_at.is_some() || cluster.as_ref().is_none_or(|k| k.revoked_at.is_some());
        if revoked {
            return Err(Error::Unauthenticated(format!(
                "cluster {}'s identity was revoked: enroll it again with a new enrollment token \
                 (node-manager enroll --cluster --force)",
                peer.node
            )));
        }
        if rec.expires_at <= self.now_ms() {
            return Err(Error::Unauthenticated(format!(
                "cluster {}'s certificate has expired: enroll it again",
                peer.node
            )));
        }
        cluster.ok_or_else(|| {
            Error::Unauthenticated(format!("cluster {} no longer exists", peer.node))
        })
    }

    /// Renews a cluster's certificate (asked on any member's channel) unless it was revoked.
    pub async fn renew_cluster_cert(
        &self,
        cluster: &str,
        issue: impl FnOnce(&str) -> Result<IssuedCert>,
    ) -> Result<IssuedCert> {
        let mut tx = self.db.begin().await?;
        let live = store::get_cluster(&mut tx, cluster)
            .await?
            .is_some_and(|k| k.revoked_at.is_none());
        if !live {
            return Err(Error::Unauthenticated(format!(
                "cluster {cluster}'s identity was revoked: it must enroll again"
            )));
        }
        let held = store::prune_cluster_certs(&mut tx, cluster, self.now_ms()).await?;
        if held >= MAX_LIVE_CLUSTER_CERTS {
            return Err(Error::Exhausted(format!(
                "cluster {cluster} already holds {held} unexpired certificates; ask again when one expires"
            )));
        }
        let cert = issue(cluster)?;
        store::insert_cluster_cert(
            &mut tx,
            &cert.serial,
            cluster,
            cert.issued_at,
            cert.expires_at,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(cluster, serial = %cert.serial, "cluster certificate renewed");
        Ok(cert)
    }

    /// Revokes a cluster's identity (admins, or PIs of its site): its certificates stop
    /// working and every member's channel drops now. Members and their slivers stay.
    pub async fn revoke_cluster(&self, p: &Principal, name: &str) -> Result<Vec<NodeView>> {
        let who = p.user()?;
        let now = self.now_ms();
        let mut tx = self.db.begin().await?;
        let k = store::get_cluster(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("cluster", name))?;
        if !crate::auth::may_manage_site(who, &k.site) {
            return Err(Error::denied(format!(
                "{} may not manage cluster {name} of site {}",
                who.name, k.site
            )));
        }
        let certs = store::revoke_cluster(&mut tx, name, now).await?;
        let members = store::cluster_members(&mut tx, name).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("cluster/{name}"),
                "identity revoked",
                format!(
                    "{certs} certificate(s) revoked; its {} member(s) are cut off until it enrolls again",
                    members.len()
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        for m in &members {
            self.hub.kick(m);
        }
        let mut out = Vec::with_capacity(members.len());
        for m in &members {
            out.push(self.get_node(p, m).await?);
        }
        Ok(out)
    }
}
