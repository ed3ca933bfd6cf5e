//! Who is calling: bearer tokens in, a `Principal` out.
//!
//! Secrets are 256 random bits, handed out once and stored only as SHA-256 hashes, so a copy
//! of the database does not let anyone act as a user or a node. A prefix tells the kind of
//! secret apart (`sbu_` user, `sbe_` enrollment, `sbn_` node) so a node credential can never be
//! mistaken for a user token, whatever the database says.

use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::model::{now_ms, Role, Token, TokenKind, User};
use crate::store::{self, Conn};

/// The prefix that tells a secret's kind, whatever the database says.
fn prefix(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::User => "sbu_",
        TokenKind::Enroll => "sbe_",
        TokenKind::Node => "sbn_",
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A person.
    User(User),
    /// A node manager, by node name and site.
    Node { name: String, site: String },
    /// Someone holding a one-time enrollment token for a site.
    Enroll { token_id: String, site: String },
}

impl Principal {
    /// The actor written into events.
    pub fn actor(&self) -> String {
        match self {
            Principal::User(u) => format!("user/{}", u.name),
            Principal::Node { name, .. } => format!("node/{name}"),
            Principal::Enroll { token_id, .. } => format!("enrollment/{token_id}"),
        }
    }

    /// The user behind a user token, or PermissionDenied for node and enrollment credentials.
    pub fn user(&self) -> Result<&User> {
        match self {
            Principal::User(u) => Ok(u),
            _ => Err(Error::denied("this API needs a user token; node credentials and enrollment tokens cannot act as users")),
        }
    }
}

/// A fresh secret of a kind, with its hash and a public id.
///
/// The id is drawn apart from the secret: ids are shown in lists and events, so they must
/// tell nothing about the secret (they once were its first 32 bits). Old rows keep their ids.
pub fn new_secret(kind: TokenKind) -> (String, String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let secret = format!("{}{}", prefix(kind), hex::encode(raw));
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    let id = format!("{}-{}", &kind.as_str()[..1], hex::encode(id));
    (secret.clone(), hash(&secret), id)
}

/// The stored hash of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Moves after every commit that revokes credentials (process-wide: a move caused by another
/// service instance in the same process only costs a spurious re-check).
static REVOCATIONS: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> =
    std::sync::OnceLock::new();

fn revocations_sender() -> &'static tokio::sync::watch::Sender<u64> {
    REVOCATIONS.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Wakes whenever a credential was revoked: long streams re-check theirs then, instead of
/// querying the database on every message.
pub fn revocations() -> tokio::sync::watch::Receiver<u64> {
    revocations_sender().subscribe()
}

/// Tells long streams that some credential was revoked; call after the commit.
pub fn note_revocation() {
    revocations_sender().send_modify(|n| *n = n.wrapping_add(1));
}

/// Extracts the bearer token from request metadata.
pub fn bearer(md: &MetadataMap) -> Result<&str> {
    let v = md.get("authorization").ok_or_else(|| {
        Error::Unauthenticated("missing bearer token (authorization metadata)".into())
    })?;
    let v = v
        .to_str()
        .map_err(|_| Error::Unauthenticated("malformed authorization metadata".into()))?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthenticated("authorization must be \"Bearer <token>\"".into()))
}

/// Checks a token that is not revoked or expired.
fn check_live(t: &Token, now: i64) -> Result<()> {
    if t.revoked {
        return Err(Error::Unauthenticated("token has been revoked".into()));
    }
    if t.expires_at.is_some_and(|e| e <= now) {
        return Err(Error::Unauthenticated("token has expired".into()));
    }
    Ok(())
}

/// Resolves a secret to a principal. Enrollment tokens are returned even if used, so the
/// enrollment path can say "already used"; everything else about them is checked here.
pub async fn authenticate(c: &mut Conn, secret: &str) -> Result<Principal> {
    Ok(authenticate_token(c, secret).await?.0)
}

/// `authenticate`, also returning the token the secret belongs to (its id and expiry bound
/// the tokens it creates, and long streams re-check it).
pub async fn authenticate_token(c: &mut Conn, secret: &str) -> Result<(Principal, Token)> {
    let kind = TokenKind::ALL
        .iter()
        .copied()
        .find(|k| secret.starts_with(prefix(*k)))
        .ok_or_else(|| Error::Unauthenticated("unknown token format".into()))?;
    let t = store::token_by_hash(c, &hash(secret))
        .await?
        .filter(|t| t.kind == kind)
        .ok_or_else(|| Error::Unauthenticated("invalid token".into()))?;
    check_live(&t, now_ms())?;
    match kind {
        TokenKind::User => {
            let u = store::get_user(c, &t.subject)
                .await?
                .ok_or_else(|| Error::Unauthenticated("token's user no longer exists".into()))?;
            Ok((Principal::User(u), t))
        }
        TokenKind::Enroll => {
            if t.used_at.is_some() {
                return Err(Error::Unauthenticated(
                    "enrollment token has already been used".into(),
                ));
            }
            let p = Principal::Enroll {
                token_id: t.id.clone(),
                site: t.subject.clone(),
            };
            Ok((p, t))
        }
        TokenKind::Node => {
            let n = store::get_node(c, &t.subject).await?.ok_or_else(|| {
                Error::Unauthenticated("node credential's node no longer exists".into())
            })?;
            let p = Principal::Node {
                name: n.name,
                site: n.site,
            };
            Ok((p, t))
        }
    }
}

/// May `who` manage user `target` (tokens, creation)? Admins manage everyone; PIs manage
/// the plain users of their own site; everyone manages themselves.
pub fn may_manage_user(who: &User, target: &User) -> bool {
    who.name == target.name
        || who.role == Role::Admin
        || (who.role == Role::Pi
            && target.role == Role::User
            && who.site.is_some()
            && who.site == target.site)
}

/// May `who` manage things of `site` (nodes, enrollment tokens)?
pub fn may_manage_site(who: &User, site: &str) -> bool {
    who.role == Role::Admin || (who.role == Role::Pi && who.site.as_deref() == Some(site))
}

/// Requires an admin.
pub fn require_admin(who: &User) -> Result<()> {
    if who.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::denied(format!(
            "only admins may do this; {} is a {}",
            who.name,
            who.role.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role, site: Option<&str>) -> User {
        User {
            name: name.into(),
            role,
            site: site.map(Into::into),
            created_at: 0,
        }
    }

    #[test]
    fn secrets_are_distinct_and_prefixed() {
        let (a, ha, _) = new_secret(TokenKind::User);
        let (b, hb, _) = new_secret(TokenKind::Node);
        assert!(a.starts_with("sbu_") && b.starts_with("sbn_"));
        assert_ne!(ha, hb);
        assert_eq!(hash(&a), ha);
        assert!(!ha.contains(&a[4..]));
    }

    #[test]
    fn token_ids_tell_nothing_of_the_secret() {
        for _ in 0..32 {
            let (secret, _, id) = new_secret(TokenKind::User);
            let (_, digits) = id.split_once('-').unwrap();
            assert_eq!(digits.len(), 16, "{id}");
            assert!(!secret.contains(digits), "{id} is part of {secret}");
            assert!(
                !secret[4..].starts_with(&digits[..8]),
                "{id} begins {secret}"
            );
        }
    }

    #[test]
    fn management_matrix() {
        let admin = user("root", Role::Admin, None);
        let pi = user("pat", Role::Pi, Some("mit"));
        let alice = user("alice", Role::User, Some("mit"));
        let bob = user("bob", Role::User, Some("eth"));
        let pi2 = user("quinn", Role::Pi, Some("mit"));
        assert!(may_manage_user(&admin, &bob));
        assert!(may_manage_user(&pi, &alice));
        assert!(!may_manage_user(&pi, &bob));
        assert!(!may_manage_user(&pi, &pi2));
        assert!(!may_manage_user(&alice, &bob));
        assert!(may_manage_user(&alice, &alice));
        assert!(may_manage_site(&pi, "mit") && !may_manage_site(&pi, "eth"));
        assert!(!may_manage_site(&alice, "mit"));
        assert!(require_admin(&pi).is_err() && require_admin(&admin).is_ok());
    }
}
