//! Records of the image store: repositories (owner, site, visibility), manifests with the
//! blobs they need, and tags. Who may see what is one SQL condition ([`visible_sql`]) shared
//! by every read, so a list and a lookup can never disagree.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_json, to_json, Conn};
use crate::error::{Error, Result};
use crate::model::Millis;

/// Who may read a repository's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The owner, and members of live slices running one of its images.
    Private,
    /// Also every user of the owner's site.
    Site,
    /// Everyone.
    Public,
}

impl Visibility {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Site => "site",
            Visibility::Public => "public",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "private" => Visibility::Private,
            "site" => Visibility::Site,
            "public" => Visibility::Public,
            other => return Err(Error::Internal(format!("stored visibility {other:?}"))),
        })
    }
}

/// A repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Repo {
    pub name: String,
    pub owner: String,
    /// '' for system images.
    pub site: String,
    pub visibility: Visibility,
    pub created_at: Millis,
}

/// One manifest of a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    pub name: String,
    pub digest: String,
    pub config_digest: String,
    /// Manifest + config + layers.
    pub size: u64,
    /// Layer digests and sizes, in order.
    pub layers: Vec<(String, u64)>,
    pub created_at: Millis,
}

/// Who reads: an admin sees everything, a user what [`visible_sql`] allows.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    Admin,
    User { name: &'a str, site: &'a str },
}

/// The condition "reader `$u` of site `$s` may read manifest `m` of repository `r`", with the
/// user's name at placeholder `u` and their site at `s`. A live slice opens its image to its
/// owner and members only under the repository it named (`slices.image` is the reference as
/// given), so the same bytes under another user's private name stay hidden.
fn visible_sql(u: usize, s: usize) -> String {
    format!(
        "(r.owner = ${u} OR r.visibility = 'public' \
          OR (r.visibility = 'site' AND r.site = ${s} AND r.site <> '') \
          OR EXISTS (SELECT 1 FROM slices sl WHERE sl.life = 'live' AND sl.image_digest = m.digest \
                     AND (sl.image = m.name OR substr(sl.image, 1, length(m.name) + 1) IN (m.name || ':', m.name || '@')) \
                     AND (sl.owner = ${u} OR EXISTS (SELECT 1 FROM slice_members sm \
                          WHERE sm.slice_id = sl.id AND sm.user_name = ${u}))))"
    )
}

const M_COLS: &str = "m.name, m.digest, m.config_digest, m.size, m.layers, m.created_at";
const R_COLS: &str = "r.owner, r.site, r.visibility, r.created_at AS repo_created_at";

fn manifest_from(r: &AnyRow) -> Result<ManifestRow> {
    let layers: Vec<(String, u64)> = from_json(&r.try_get::<String, _>("layers")?)?;
    Ok(ManifestRow {
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        config_digest: r.try_get("config_digest")?,
        size: r.try_get::<i64, _>("size")? as u64,
        layers,
        created_at: r.try_get("created_at")?,
    })
}

fn repo_from(r: &AnyRow) -> Result<Repo> {
    Ok(Repo {
        name: r.try_get("name")?,
        owner: r.try_get("owner")?,
        site: r.try_get("site")?,
        visibility: Visibility::parse(&r.try_get::<String, _>("visibility")?)?,
        created_at: r.try_get("repo_created_at")?,
    })
}

/// A repository by name.
pub async fn get_repo(c: &mut Conn, name: &str) -> Result<Option<Repo>> {
    let row = sqlx::query(sql!(
        "SELECT r.name, {R_COLS} FROM image_repos r WHERE r.name = $1"
    ))
    .bind(name)
    .fetch_optional(c)
    .await?;
    row.as_ref().map(repo_from).transpose()
}

/// Creates a repository.
pub async fn insert_repo(c: &mut Conn, r: &Repo) -> Result<()> {
    sqlx::query("INSERT INTO image_repos (name, owner, site, visibility, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.name)
        .bind(&r.owner)
        .bind(&r.site)
        .bind(r.visibility.as_str())
        .bind(r.created_at)
        .execute(c)
        .await?;
    Ok(())
}

/// Sets a repository's visibility.
pub async fn set_visibility(c: &mut Conn, name: &str, v: Visibility) -> Result<()> {
    sqlx::query("UPDATE image_repos SET visibility = $1 WHERE name = $2")
        .bind(v.as_str())
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

/// Records a manifest and the blobs it needs (nothing if it is already recorded).
pub async fn insert_manifest(c: &mut Conn, m: &ManifestRow, blobs: &[String]) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO image_manifests (name, digest, config_digest, size, layers, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&m.name)
    .bind(&m.digest)
    .bind(&m.config_digest)
    .bind(m.size as i64)
    .bind(to_json(&m.layers)?)
    .bind(m.created_at)
    .execute(&mut *c)
    .await?
    .rows_affected();
    for b in blobs {
        sqlx::query("INSERT INTO image_blobs (name, manifest, blob) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&m.name)
            .bind(&m.digest)
            .bind(b)
            .execute(&mut *c)
            .await?;
    }
    Ok(n > 0)
}

/// Points a tag at a digest; the digest it pointed at before, if any.
pub async fn set_tag(
    c: &mut Conn,
    name: &str,
    tag: &str,
    digest: &str,
    now: Millis,
) -> Result<Option<String>> {
    let old = tag_digest(c, name, tag).await?;
    sqlx::query(
        "INSERT INTO image_tags (name, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(tag)
    .bind(digest)
    .bind(now)
    .execute(c)
    .await?;
    Ok(old)
}

/// The digest a tag points at.
pub async fn tag_digest(c: &mut Conn, name: &str, tag: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT digest FROM image_tags WHERE name = $1 AND tag = $2")
        .bind(name)
        .bind(tag)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| r.try_get("digest")).transpose()?)
}

/// Removes a tag; whether it existed.
pub async fn delete_tag(c: &mut Conn, name: &str, tag: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM image_tags WHERE name = $1 AND tag = $2")
        .bind(name)
        .bind(tag)
        .execute(c)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Tags of a manifest, sorted.
pub async fn tags_of(c: &mut Conn, name: &str, digest: &str) -> Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT tag FROM image_tags WHERE name = $1 AND digest = $2 ORDER BY tag")
            .bind(name)
            .bind(digest)
            .fetch_all(c)
            .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("tag"))
        .collect::<Result<_, _>>()?)
}

/// Removes a manifest, its tags and its blob references (the repository too when it was its
/// last manifest); the blobs it referenced.
pub async fn delete_manifest(c: &mut Conn, name: &str, digest: &str) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT blob FROM image_blobs WHERE name = $1 AND manifest = $2")
        .bind(name)
        .bind(digest)
        .fetch_all(&mut *c)
        .await?;
    let blobs = rows
        .iter()
        .map(|r| r.try_get("blob"))
        .collect::<Result<Vec<String>, _>>()?;
    for q in [
        "DELETE FROM image_blobs WHERE name = $1 AND manifest = $2",
        "DELETE FROM image_tags WHERE name = $1 AND digest = $2",
        "DELETE FROM image_manifests WHERE name = $1 AND digest = $2",
    ] {
        sqlx::query(q)
            .bind(name)
            .bind(digest)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query("DELETE FROM image_repos WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM image_manifests WHERE name = $1)")
        .bind(name)
        .execute(c)
        .await?;
    Ok(blobs)
}

/// A manifest with its repository, if `reader` may read it.
pub async fn visible_manifest(
    c: &mut Conn,
    reader: Reader<'_>,
    name: &str,
    digest: &str,
) -> Result<Option<(ManifestRow, Repo)>> {
    let mut rows = list_visible(c, reader, Some(name), Some(digest), None).await?;
    Ok(rows.pop())
}

/// Manifests `reader` may read, optionally of one repository, one digest, or one owner.
pub async fn list_visible(
    c: &mut Conn,
    reader: Reader<'_>,
    name: Option<&str>,
    digest: Option<&str>,
    owner: Option<&str>,
) -> Result<Vec<(ManifestRow, Repo)>> {
    let (vis, user, site) = match reader {
        Reader::Admin => ("($1 = $1 AND $2 = $2)".to_string(), "", ""),
        Reader::User { name, site } => (visible_sql(1, 2), name, site),
    };
    let q = sql!(
        "SELECT {M_COLS}, {R_COLS} FROM image_manifests m JOIN image_repos r ON r.name = m.name \
         WHERE {vis} AND ($3 = '' OR m.name = $3) AND ($4 = '' OR m.digest = $4) AND ($5 = '' OR r.owner = $5) \
         ORDER BY m.name, m.created_at, m.digest"
    );
    let rows = sqlx::query(q)
        .bind(user)
        .bind(site)
        .bind(name.unwrap_or(""))
        .bind(digest.unwrap_or(""))
        .bind(owner.unwrap_or(""))
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((manifest_from(r)?, repo_from(r)?)))
        .collect()
}

/// Whether `reader` may read some image that uses blob `blob`.
pub async fn blob_visible(c: &mut Conn, reader: Reader<'_>, blob: &str) -> Result<bool> {
    let (vis, user, site) = match reader {
        Reader::Admin => ("($1 = $1 AND $2 = $2)".to_string(), "", ""),
        Reader::User { name, site } => (visible_sql(1, 2), name, site),
    };
    let q = sql!(
        "SELECT 1 AS one FROM image_blobs ib JOIN image_manifests m ON m.name = ib.name AND m.digest = ib.manifest \
         JOIN image_repos r ON r.name = m.name WHERE ib.blob = $3 AND {vis} LIMIT 1"
    );
    let row = sqlx::query(q)
        .bind(user)
        .bind(site)
        .bind(blob)
        .fetch_optional(c)
        .await?;
    Ok(row.is_some())
}

/// Bytes of distinct blobs the images of `site` hold, and which of `blobs` are among them.
pub async fn site_usage(c: &mut Conn, site: &str, blobs: &[String]) -> Result<(u64, Vec<String>)> {
    let used: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS used FROM blobs b WHERE b.digest IN \
         (SELECT ib.blob FROM image_blobs ib JOIN image_repos r ON r.name = ib.name WHERE r.site = $1)",
    )
    .bind(site)
    .fetch_one(&mut *c)
    .await?
    .try_get("used")?;
    let mut held = Vec::new();
    for b in blobs {
        let row = sqlx::query(
            "SELECT 1 AS one FROM image_blobs ib JOIN image_repos r ON r.name = ib.name \
             WHERE r.site = $1 AND ib.blob = $2 LIMIT 1",
        )
        .bind(site)
        .bind(b)
        .fetch_optional(&mut *c)
        .await?;
        if row.is_some() {
            held.push(b.clone());
        }
    }
    Ok((used.max(0) as u64, held))
}

/// Names of live slices pinned to `digest`.
pub async fn live_slices_using(c: &mut Conn, digest: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT name FROM slices WHERE life = 'live' AND image_digest = $1 ORDER BY name",
    )
    .bind(digest)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<Result<_, _>>()?)
}

/// Ids of live slices pinned to `digest` under repository `name` (the reference they were
/// created with names it, as in [`visible_sql`]), by slice name.
pub async fn live_slices_pinning(c: &mut Conn, name: &str, digest: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM slices sl WHERE sl.life = 'live' AND sl.image_digest = $1 \
         AND (sl.image = $2 OR substr(sl.image, 1, length($2) + 1) IN ($2 || ':', $2 || '@')) \
         ORDER BY sl.name",
    )
    .bind(digest)
    .bind(name)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?)
}

/// Whether `reader` may read blob `blob` through repository `name` (the OCI API reads blobs
/// by repository).
pub async fn repo_blob_visible(
    c: &mut Conn,
    reader: Reader<'_>,
    name: &str,
    blob: &str,
) -> Result<bool> {
    let (vis, user, site) = match reader {
        Reader::Admin => ("($1 = $1 AND $2 = $2)".to_string(), "", ""),
        Reader::User { name, site } => (visible_sql(1, 2), name, site),
    };
    let q = sql!(
        "SELECT 1 AS one FROM image_blobs ib JOIN image_manifests m ON m.name = ib.name AND m.digest = ib.manifest \
         JOIN image_repos r ON r.name = m.name WHERE ib.name = $3 AND ib.blob = $4 AND {vis} LIMIT 1"
    );
    let row = sqlx::query(q)
        .bind(user)
        .bind(site)
        .bind(name)
        .bind(blob)
        .fetch_optional(c)
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests;
