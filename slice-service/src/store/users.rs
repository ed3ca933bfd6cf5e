//! Users and tokens. Tokens are stored only as SHA-256 hashes of the secret.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Conn;
use crate::error::{Error, Result};
use crate::model::{Role, Token, TokenKind, User};

fn user_from(r: &AnyRow) -> Result<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| Error::Internal(format!("stored role {role:?}")))?,
        site: r.try_get("site")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts a user; a duplicate name is `AlreadyExists`.
pub async fn insert_user(c: &mut Conn, u: &User) -> Result<()> {
    if get_user(c, &u.name).await?.is_some() {
        return Err(Error::AlreadyExists {
            kind: "user",
            name: u.name.clone(),
        });
    }
    sqlx::query("INSERT INTO users (name, role, site, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(u.site.clone())
        .bind(u.created_at)
        .execute(c)
        .await?;
    Ok(())
}

/// Reads a user.
pub async fn get_user(c: &mut Conn, name: &str) -> Result<Option<User>> {
    let row = sqlx::query("SELECT name, role, site, created_at FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(user_from).transpose()
}

/// Users, optionally of one site, by name.
pub async fn list_users(c: &mut Conn, site: Option<&str>) -> Result<Vec<User>> {
    let rows = sqlx::query(
        "SELECT name, role, site, created_at FROM users WHERE ($1 = '' OR site = $1) ORDER BY name",
    )
    .bind(site.unwrap_or(""))
    .fetch_all(c)
    .await?;
    rows.iter().map(user_from).collect()
}

/// Number of users (zero before bootstrap).
pub async fn count_users(c: &mut Conn) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(c)
        .await?
        .try_get("n")?)
}

fn token_from(r: &AnyRow) -> Result<Token, sqlx::Error> {
    Ok(Token {
        id: r.try_get("id")?,
        kind: r
            .try_get::<String, _>("kind")?
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        subject: r.try_get("subject")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        used_at: r.try_get("used_at")?,
        parent_id: r.try_get("parent_id")?,
    })
}

const TOKEN_COLS: &str =
    "id, kind, subject, description, created_at, expires_at, revoked, used_at, parent_id";

/// Stores a token's hash and metadata.
pub async fn insert_token(c: &mut Conn, t: &Token, hash: &str) -> Result<()> {
    sqlx::query(sql!(
        "INSERT INTO tokens ({TOKEN_COLS}, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&t.id)
    .bind(t.kind.as_str())
    .bind(&t.subject)
    .bind(&t.description)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.revoked as i64)
    .bind(t.used_at)
    .bind(t.parent_id.clone())
    .bind(hash)
    .execute(c)
    .await?;
    Ok(())
}

/// The query of `token_by_hash` (the unique index on `hash`): every authenticated call runs it.
pub(crate) fn token_by_hash_query() -> String {
    format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = $1")
}

/// Finds a token by the hash of its secret.
pub async fn token_by_hash(c: &mut Conn, hash: &str) -> Result<Option<Token>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(token_by_hash_query()))
        .bind(hash)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(token_from).transpose()?)
}

/// Finds a token by id.
pub async fn token_by_id(c: &mut Conn, id: &str) -> Result<Option<Token>> {
    let row = sqlx::query(sql!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"))
        .bind(id)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(token_from).transpose()?)
}

/// The query of `list_tokens` (`tokens_subject`).
pub(crate) fn list_tokens_query() -> String {
    format!(
        "SELECT {TOKEN_COLS} FROM tokens WHERE kind = $1 AND subject = $2 ORDER BY created_at DESC, id"
    )
}

/// Tokens of one kind and subject, newest first.
pub async fn list_tokens(c: &mut Conn, kind: TokenKind, subject: &str) -> Result<Vec<Token>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(list_tokens_query()))
        .bind(kind.as_str())
        .bind(subject)
        .fetch_all(c)
        .await?;
    Ok(rows.iter().map(token_from).collect::<Result<_, _>>()?)
}

/// Marks a token revoked.
pub async fn revoke_token(c: &mut Conn, id: &str) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE id = $1")
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// The tokens created with one (`tokens_parent`).
pub(crate) const CHILD_TOKENS: &str = "SELECT id FROM tokens WHERE parent_id = $1";

/// Revokes a token and every token created with it, their children included; returns how
/// many were live before. One query per generation: token trees are shallow.
pub async fn revoke_token_tree(c: &mut Conn, id: &str) -> Result<u64> {
    let mut revoked = 0;
    let mut generation = vec![id.to_string()];
    // Bounded so a (corrupt) cycle cannot loop forever.
    for _ in 0..64 {
        let mut next = Vec::new();
        for id in &generation {
            revoked += sqlx::query("UPDATE tokens SET revoked = 1 WHERE id = $1 AND revoked = 0")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected();
            let rows = sqlx::query(CHILD_TOKENS)
                .bind(id)
                .fetch_all(&mut *c)
                .await?;
            for r in rows {
                next.push(r.try_get::<String, _>("id")?);
            }
        }
        if next.is_empty() {
            break;
        }
        generation = next;
    }
    Ok(revoked)
}

/// Consumes a one-time token. Returns false when it was already used: the conditional
/// update makes two racing enrollments with one token end with exactly one winner.
pub async fn consume_token(c: &mut Conn, id: &str, at: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Revokes every token of a subject (e.g. a deleted node's credential).
pub async fn revoke_subject_tokens(c: &mut Conn, kind: TokenKind, subject: &str) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE kind = $1 AND subject = $2")
        .bind(kind.as_str())
        .bind(subject)
        .execute(c)
        .await?;
    Ok(())
}
