//! Sites, users, tokens and node administration.

use std::time::Duration;

use crate::auth::{self, Principal};
use crate::error::{Error, Result};
use crate::model::{now_ms, AdminState, NewEvent, Node, Role, Site, Token, TokenKind, User};
use crate::names;
use crate::state::SliverState;
use crate::store;

use super::{Core, NodeView};

/// Longest drain deadline: beyond a year, a drain without deadline says it better.
const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(365 * 86_400);

/// Longest lifetime of any token a user may ask for.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(400 * 86_400);

impl Core {
    /// Creates a site (admins).
    pub async fn create_site(&self, p: &Principal, mut s: Site) -> Result<Site> {
        auth::require_admin(p.user()?)?;
        names::dns_label("site name", &s.name)?;
        names::text("display name", &s.display_name, 200)?;
        names::text("city", &s.city, 100)?;
        names::text("country", &s.country, 100)?;
        if !(-90.0..=90.0).contains(&s.latitude) || s.latitude.is_nan() {
            return Err(Error::invalid(format!(
                "latitude {} is outside -90..90",
                s.latitude
            )));
        }
        if !(-180.0..=180.0).contains(&s.longitude) || s.longitude.is_nan() {
            return Err(Error::invalid(format!(
                "longitude {} is outside -180..180",
                s.longitude
            )));
        }
        if s.max_slices < 0
            || s.max_slivers < 0
            || s.max_slices > 1_000_000
            || s.max_slivers > 1_000_000
        {
            return Err(Error::invalid(
                "quotas must be between 0 (unlimited) and 1000000",
            ));
        }
        if s.display_name.is_empty() {
            s.display_name = s.name.clone();
        }
        s.created_at = self.now_ms();
        let mut tx = self.db.begin().await?;
        store::insert_site(&mut tx, &s).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(&p.actor(), format!("site/{}", s.name), "created", ""),
        )
        .await?;
        tx.commit().await?;
        self.refresh_site(&s.name).await?;
        Ok(s)
    }

    /// All sites.
    pub async fn list_sites(&self, p: &Principal) -> Result<Vec<Site>> {
        p.user()?;
        store::list_sites(&mut *self.db.conn().await?).await
    }

    /// One site.
    pub async fn get_site(&self, p: &Principal, name: &str) -> Result<Site> {
        p.user()?;
        store::get_site(&mut *self.db.conn().await?, name)
            .await?
            .ok_or_else(|| Error::not_found("site", name))
    }

    /// Deletes an unused site (admins).
    pub async fn delete_site(&self, p: &Principal, name: &str) -> Result<()> {
        auth::require_admin(p.user()?)?;
        let mut tx = self.db.begin().await?;
        store::get_site(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("site", name))?;
        let (users, nodes, slices) = store::site_references(&mut tx, name).await?;
        if users + nodes + slices > 0 {
            return Err(Error::Precondition(format!(
                "site {name} still has {users} user(s), {nodes} node(s) and {slices} live slice(s); remove them first"
            )));
        }
        store::delete_site(&mut tx, name).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(&p.actor(), format!("site/{name}"), "deleted", ""),
        )
        .await?;
        tx.commit().await?;
        self.refresh_site(name).await?;
        Ok(())
    }

    fn token_ttl(&self, asked: Option<Duration>) -> Result<Duration> {
        match asked {
            None => Ok(self.cfg.token_ttl),
            Some(d) if d.is_zero() => Err(Error::invalid("token ttl must be positive")),
            Some(d) if d > MAX_TOKEN_TTL => Err(Error::invalid(format!(
                "token ttl of {} days exceeds the maximum of {} days",
                d.as_secs() / 86_400,
                MAX_TOKEN_TTL.as_secs() / 86_400
            ))),
            Some(d) => Ok(d),
        }
    }

    /// Creates a user and their first token. Returns the user, the secret and its metadata.
    pub async fn create_user(
        &self,
        p: &Principal,
        name: &str,
        role: Role,
        site: Option<String>,
        ttl: Option<Duration>,
    ) -> Result<(User, String, Token)> {
        let who = p.user()?;
        names::dns_label("user name", name)?;
        let ttl = self.token_ttl(ttl)?;
        let site = site.filter(|s| !s.is_empty());
        if site.is_none() && role != Role::Admin {
            return Err(Error::invalid("site is required for pi and user accounts"));
        }
        let u = User {
            name: name.to_string(),
            role,
            site,
            created_at: self.now_ms(),
        };
        if who.role != Role::Admin && (!auth::may_manage_user(who, &u) || who.name == u.name) {
            {
                return Err(Error::denied(format!(
                    "{} may only create plain users of their own site ({})",
                    who.name,
                    who.site.as_deref().unwrap_or("none")
                )));
            }
        }
        let mut tx = self.db.begin().await?;
        if let Some(s) = &u.site {
            store::get_site(&mut tx, s)
                .await?
                .ok_or_else(|| Error::not_found("site", s.clone()))?;
        }
        store::insert_user(&mut tx, &u).await?;
        let (secret, token) = issue_token(
            &mut tx,
            TokenKind::User,
            &u.name,
            "created with the user",
            Some(ttl),
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("user/{}", u.name),
                "created",
                format!("role {}", role.as_str()),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((u, secret, token))
    }

    /// Users the caller may see.
    pub async fn list_users(&self, p: &Principal, site: Option<&str>) -> Result<Vec<User>> {
        let who = p.user()?;
        let all =
            store::list_users(&mut *self.db.conn().await?, site.filter(|s| !s.is_empty())).await?;
        Ok(all
            .into_iter()
            .filter(|u| {
                auth::may_manage_user(who, u) || (who.role == Role::Pi && who.site == u.site)
            })
            .collect())
    }

    async fn managed_user(&self, p: &Principal, user: &str) -> Result<User> {
        let who = p.user()?;
        if user.is_empty() || user == who.name {
            return Ok(who.clone());
        }
        let target = store::get_user(&mut *self.db.conn().await?, user)
            .await?
            .ok_or_else(|| Error::not_found("user", user))?;
        if !auth::may_manage_user(who, &target) {
            return Err(Error::denied(format!(
                "{} may not manage the tokens of {}",
                who.name, target.name
            )));
        }
        Ok(target)
    }

    /// Issues a token for the caller, or (admins only) for another user. `via` is the token
    /// the call was made with: the new one expires no later and is revoked with it.
    ///
    /// A PI may not mint tokens for the users of its site: whatever it did with one would be
    /// logged as the user's doing. PIs create users (whose first token they hand over) and
    /// revoke their tokens; the users mint their own.
    pub async fn create_token(
        &self,
        p: &Principal,
        via: Option<&Token>,
        user: &str,
        ttl: Option<Duration>,
        description: &str,
    ) -> Result<(String, Token)> {
        let who = p.user()?;
        let target = self.managed_user(p, user).await?;
        if target.name != who.name && who.role != Role::Admin {
            return Err(Error::denied(format!(
                "{} may not create tokens for {}: only admins may, since its actions would be \
                 logged as {}'s; {} can create their own with `slicectl token create`",
                who.name, target.name, target.name, target.name
            )));
        }
        names::text("description", description, 200)?;
        let ttl = self.token_ttl(ttl)?;
        let mut tx = self.db.begin().await?;
        let parent = live_parent(&mut tx, via).await?;
        let (secret, t) = issue_token_under(
            &mut tx,
            self.now_ms(),
            &target.name,
            description,
            ttl,
            parent.as_ref(),
        )
        .await?;
        let capped = if parent.as_ref().and_then(|p| p.expires_at) == t.expires_at
            && t.expires_at.is_some()
        {
            " (expires with the token it was created with)"
        } else {
            ""
        };
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("token/{}", t.id),
                "created",
                format!("for {}{capped}", target.name),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((secret, t))
    }

    /// Revokes a user token by id, and every token created with it.
    pub async fn revoke_token(&self, p: &Principal, id: &str) -> Result<()> {
        let t = store::token_by_id(&mut *self.db.conn().await?, id)
            .await?
            .filter(|t| t.kind == TokenKind::User)
            .ok_or_else(|| Error::not_found("token", id))?;
        self.managed_user(p, &t.subject).await?;
        let mut tx = self.db.begin().await?;
        let n = store::revoke_token_tree(&mut tx, id).await?;
        let also = match n.saturating_sub(u64::from(!t.revoked)) {
            0 => String::new(),
            k => format!(" and {k} token(s) created with it"),
        };
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("token/{id}"),
                "revoked",
                format!("of {}{also}", t.subject),
            ),
        )
        .await?;
        tx.commit().await?;
        auth::note_revocation();
        Ok(())
    }

    /// Replaces the token `via` the call was made with: a new one for the same user, then
    /// `via` and the tokens created with it are revoked, in one transaction. The new token
    /// takes `via`'s place in the tree (same parent, bounded by it). The way to renew the
    /// bootstrap admin token before it expires.
    pub async fn rotate_token(
        &self,
        p: &Principal,
        via: &Token,
        ttl: Option<Duration>,
    ) -> Result<(String, Token)> {
        let who = p.user()?;
        if via.kind != TokenKind::User || via.subject != who.name {
            return Err(Error::denied(
                "only a user token can be rotated, by its user",
            ));
        }
        let ttl = match ttl {
            None if who.role == Role::Admin => self.cfg.admin_token_ttl,
            other => self.token_ttl(other)?,
        };
        let mut tx = self.db.begin().await?;
        let current = store::token_by_id(&mut tx, &via.id)
            .await?
            .filter(|t| !t.revoked)
            .ok_or_else(|| Error::Unauthenticated("token has been revoked".into()))?;
        let parent = match &current.parent_id {
            Some(id) => store::token_by_id(&mut tx, id).await?,
            None => None,
        };
        let (secret, t) = issue_token_under(
            &mut tx,
            self.now_ms(),
            &who.name,
            &current.description,
            ttl,
            parent.as_ref(),
        )
        .await?;
        store::revoke_token_tree(&mut tx, &current.id).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("token/{}", current.id),
                "rotated",
                format!("replaced by {}", t.id),
            ),
        )
        .await?;
        tx.commit().await?;
        auth::note_revocation();
        Ok((secret, t))
    }

    /// Tokens' metadata of the caller or a user they manage.
    pub async fn list_tokens(&self, p: &Principal, user: &str) -> Result<Vec<Token>> {
        let target = self.managed_user(p, user).await?;
        store::list_tokens(&mut *self.db.conn().await?, TokenKind::User, &target.name).await
    }

    /// Issues a one-time node enrollment token for a site.
    pub async fn create_enrollment_token(
        &self,
        p: &Principal,
        site: &str,
        ttl: Option<Duration>,
    ) -> Result<(String, Token)> {
        let who = p.user()?;
        if !auth::may_manage_site(who, site) {
            return Err(Error::denied(format!(
                "{} may not enroll nodes at site {site}",
                who.name
            )));
        }
        let ttl = ttl.unwrap_or(Duration::from_secs(3600));
        if ttl.is_zero() || ttl > Duration::from_secs(7 * 86_400) {
            return Err(Error::invalid(
                "enrollment token ttl must be between 1s and 7d",
            ));
        }
        let mut tx = self.db.begin().await?;
        store::get_site(&mut tx, site)
            .await?
            .ok_or_else(|| Error::not_found("site", site))?;
        let (secret, t) = issue_token(
            &mut tx,
            TokenKind::Enroll,
            site,
            "node enrollment",
            Some(ttl),
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                &p.actor(),
                format!("site/{site}"),
                "enrollment token issued",
                t.id.clone(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((secret, t))
    }

    /// Nodes with their state and allocation (what their slivers hold, from the fleet index).
    pub async fn list_nodes(&self, p: &Principal, site: Option<&str>) -> Result<Vec<NodeView>> {
        p.user()?;
        self.load_fleet().await?;
        let mut c = self.db.conn().await?;
        let nodes = store::list_nodes(&mut c, site.filter(|s| !s.is_empty())).await?;
        let revoked = store::revoked_clusters(&mut c).await?;
        Ok(nodes
            .into_iter()
            .map(|n| self.node_view(n, &revoked))
            .collect())
    }

    fn node_view(&self, n: Node, revoked_clusters: &[String]) -> NodeView {
        let (allocated, slivers) = self
            .with_fleet(|f| f.node(&n.name).map(|h| (h.allocated, h.slivers)))
            .flatten()
            .unwrap_or_default();
        NodeView {
            state: self.node_state(&n),
            usage: self.hub.usage(&n.name),
            allocated,
            slivers,
            engine_down: self.hub.engine_down(&n.name),
            cluster_revoked: n
                .cluster
                .as_ref()
                .is_some_and(|c| revoked_clusters.contains(c)),
            node: n,
        }
    }

    /// One node.
    pub async fn get_node(&self, p: &Principal, name: &str) -> Result<NodeView> {
        p.user()?;
        self.load_fleet().await?;
        let mut c = self.db.conn().await?;
        let n = store::get_node(&mut c, name)
            .await?
            .ok_or_else(|| Error::not_found("node", name))?;
        let revoked = match &n.cluster {
            Some(_) => store::revoked_clusters(&mut c).await?,
            None => Vec::new(),
        };
        Ok(self.node_view(n, &revoked))
    }

    /// Sets a node's administrative state (admins, or PIs of its site).
    pub async fn set_node_admin(
        &self,
        p: &Principal,
        name: &str,
        s: AdminState,
        deadline: Option<Duration>,
    ) -> Result<NodeView> {
        let who = p.user()?;
        let mut tx = self.db.begin().await?;
        let n = store::get_node(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("node", name))?;
        if !auth::may_manage_site(who, &n.site) {
            return Err(Error::denied(format!(
                "{} may not manage node {name} of site {}",
                who.name, n.site
            )));
        }
        if deadline.is_some_and(|d| d > MAX_DRAIN_DEADLINE) {
            return Err(Error::invalid(format!(
                "deadline must be at most {} days",
                MAX_DRAIN_DEADLINE.as_secs() / 86_400
            )));
        }
        let deadline_ms = deadline
            .map(|d| super::later(self.now_ms(), "deadline", d))
            .transpose()?;
        let mut changed = false;
        if n.admin_state != s || n.drain_deadline != deadline_ms {
            store::set_admin_state(&mut tx, name, s, deadline_ms).await?;
            changed = true;
            let detail = match deadline {
                Some(d) => format!("remaining slivers are removed in {}s", d.as_secs()),
                None => String::new(),
            };
            store::append_event(
                &mut tx,
                &NewEvent::new(&p.actor(), format!("node/{name}"), s.as_str(), detail),
            )
            .await?;
        }
        tx.commit().await?;
        if changed {
            self.refresh_node(name).await?;
            if n.cluster.is_some() {
                let cordon = s != AdminState::Active;
                self.hub
                    .send(name, crate::hub::NodeCommand::Admin { cordon });
            }
        }
        self.get_node(p, name).await
    }

    /// Forgets a node with no live slivers and revokes its credential.
    pub async fn delete_node(&self, p: &Principal, name: &str) -> Result<()> {
        let who = p.user()?;
        let mut tx = self.db.begin().await?;
        let n = store::get_node(&mut tx, name)
            .await?
            .ok_or_else(|| Error::not_found("node", name))?;
        if !auth::may_manage_site(who, &n.site) {
            return Err(Error::denied(format!(
                "{} may not delete node {name} of site {}",
                who.name, n.site
            )));
        }
        let slivers = store::slivers_on_node(&mut tx, name).await?;
        let live = slivers.iter().filter(|v| v.state.is_live()).count();
        if live > 0 {
            return Err(Error::Precondition(format!(
                "node {name} still holds {live} live sliver(s); delete their slices first"
            )));
        }
        // Slivers still stopping there will never be confirmed by a node that is gone.
        let now = self.now_ms();
        for mut v in slivers
            .into_iter()
            .filter(|v| v.state == SliverState::Stopping)
        {
            v.move_to(SliverState::Deleted, now)?;
            store::update_sliver_state(&mut tx, &v).await?;
            store::release(&mut tx, &v).await?;
        }
        store::revoke_subject_tokens(&mut tx, TokenKind::Node, name).await?;
        store::delete_node(&mut tx, name).await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(&p.actor(), format!("node/{name}"), "deleted", ""),
        )
        .await?;
        tx.commit().await?;
        auth::note_revocation();
        self.hub.forget(name);
        self.refresh_node(name).await?;
        Ok(())
    }

    /// Capacity view for `resources`: every node, including unreachable ones.
    pub async fn resources(&self, p: &Principal) -> Result<(Vec<Site>, Vec<NodeView>)> {
        let sites = self.list_sites(p).await?;
        let nodes = self.list_nodes(p, None).await?;
        Ok((sites, nodes))
    }

    /// Creates the bootstrap admin if the database has no users; returns its secret.
    pub async fn bootstrap(&self) -> Result<Option<String>> {
        self.load_fleet().await?;
        let mut tx = self.db.begin().await?;
        if store::count_users(&mut tx).await? > 0 {
            return Ok(None);
        }
        let u = User {
            name: "admin".into(),
            role: Role::Admin,
            site: None,
            created_at: self.now_ms(),
        };
        store::insert_user(&mut tx, &u).await?;
        // It expires: a forgotten bootstrap secret must not stay good forever. Admins rotate it
        // with `slicectl token rotate`.
        let (secret, _) = issue_token(
            &mut tx,
            TokenKind::User,
            "admin",
            "bootstrap admin token",
            Some(self.cfg.admin_token_ttl),
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new("system", "user/admin", "bootstrapped", ""),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(secret))
    }
}

impl Core {
    /// Keeps the admin token in `<data-dir>/admin.token` usable for the service host (the
    /// break-glass secret, and what deployment tools there read): when less than a third of its
    /// life is left, or it expired, and it was not revoked, a fresh one replaces it in the
    /// file. Every copy of the old secret elsewhere still dies when the old token expires; a
    /// revoked one is never renewed, revocation is a decision. Returns whether it renewed.
    pub async fn refresh_kept_admin_token(&self) -> Result<bool> {
        let path = self.cfg.data_dir.join("admin.token");
        let Ok(old) = std::fs::read_to_string(&path) else {
            return Ok(false);
        };
        let Some(secret) = self.renew_admin_token_if_due(old.trim()).await? else {
            return Ok(false);
        };
        crate::at_rest::write_private(&path, &secret)
            .map_err(|e| Error::Internal(format!("writing {}: {e:#}", path.display())))?;
        tracing::warn!(path = %path.display(), "the admin token kept there was renewed");
        Ok(true)
    }

    /// A fresh admin token replacing `old_secret`'s, if that one is an admin's user token, not
    /// revoked, and has less than a third of `admin_token_ttl` left.
    pub async fn renew_admin_token_if_due(&self, old_secret: &str) -> Result<Option<String>> {
        let mut tx = self.db.begin().await?;
        let Some(old) = store::token_by_hash(&mut tx, &auth::hash(old_secret)).await? else {
            return Ok(None);
        };
        let third = i64::try_from(self.cfg.admin_token_ttl.as_millis() / 3).unwrap_or(i64::MAX);
        let due = old
            .expires_at
            .is_some_and(|e| e.saturating_sub(self.now_ms()) <= third);
        if old.kind != TokenKind::User || old.revoked || !due {
            return Ok(None);
        }
        match store::get_user(&mut tx, &old.subject).await? {
            Some(u) if u.role == Role::Admin => {}
            _ => return Ok(None),
        }
        let (secret, t) = issue_token(
            &mut tx,
            TokenKind::User,
            &old.subject,
            &old.description,
            Some(self.cfg.admin_token_ttl),
        )
        .await?;
        store::append_event(
            &mut tx,
            &NewEvent::new(
                "system",
                format!("token/{}", t.id),
                "created",
                format!(
                    "for {}: replaces the token {} kept in admin.token, near its end",
                    old.subject, old.id
                ),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(secret))
    }
}

/// Creates and stores a token; returns the secret (never stored) and its metadata.
pub(super) async fn issue_token(
    c: &mut store::Conn,
    kind: TokenKind,
    subject: &str,
    description: &str,
    ttl: Option<Duration>,
) -> Result<(String, Token)> {
    let (secret, hash, id) = auth::new_secret(kind);
    let now = now_ms();
    let t = Token {
        id,
        kind,
        subject: subject.into(),
        description: description.into(),
        created_at: now,
        expires_at: ttl.map(|d| super::later(now, "ttl", d)).transpose()?,
        revoked: false,
        used_at: None,
        parent_id: None,
    };
    store::insert_token(c, &t, &hash).await?;
    Ok((secret, t))
}

/// Creates and stores a user token for `subject` lasting `ttl` from `now`, but never past
/// `parent`'s expiry; it records `parent` so that revoking it reaches the new one.
async fn issue_token_under(
    c: &mut store::Conn,
    now: i64,
    subject: &str,
    description: &str,
    ttl: Duration,
    parent: Option<&Token>,
) -> Result<(String, Token)> {
    let (secret, hash, id) = auth::new_secret(TokenKind::User);
    let mut expires = super::later(now, "ttl", ttl)?;
    if let Some(cap) = parent.and_then(|p| p.expires_at) {
        expires = expires.min(cap);
    }
    let t = Token {
        id,
        kind: TokenKind::User,
        subject: subject.into(),
        description: description.into(),
        created_at: now,
        expires_at: Some(expires),
        revoked: false,
        used_at: None,
        parent_id: parent.map(|p| p.id.clone()),
    };
    store::insert_token(c, &t, &hash).await?;
    Ok((secret, t))
}

/// The token a call was made with, read again inside the transaction that uses it as a
/// parent: a token revoked meanwhile must not get a child that survives it.
async fn live_parent(c: &mut store::Conn, via: Option<&Token>) -> Result<Option<Token>> {
    let Some(via) = via else { return Ok(None) };
    match store::token_by_id(c, &via.id).await? {
        Some(t) if !t.revoked => Ok(Some(t)),
        _ => Err(Error::Unauthenticated("token has been revoked".into())),
    }
}
