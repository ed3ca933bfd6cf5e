//! Sites.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Conn;
use crate::error::{Error, Result};
use crate::model::Site;

fn site_from(r: &AnyRow) -> Result<Site, sqlx::Error> {
    Ok(Site {
        name: r.try_get("name")?,
        display_name: r.try_get("display_name")?,
        city: r.try_get("city")?,
        country: r.try_get("country")?,
        latitude: r.try_get("latitude")?,
        longitude: r.try_get("longitude")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        max_slices: r.try_get("max_slices")?,
        max_slivers: r.try_get("max_slivers")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLS: &str = "name, display_name, city, country, latitude, longitude, enabled, max_slices, max_slivers, created_at";

/// Inserts a site; a duplicate name is `AlreadyExists`.
pub async fn insert_site(c: &mut Conn, s: &Site) -> Result<()> {
    if get_site(c, &s.name).await?.is_some() {
        return Err(Error::AlreadyExists {
            kind: "site",
            name: s.name.clone(),
        });
    }
    sqlx::query(sql!(
        "INSERT INTO sites ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&s.name)
    .bind(&s.display_name)
    .bind(&s.city)
    .bind(&s.country)
    .bind(s.latitude)
    .bind(s.longitude)
    .bind(s.enabled as i64)
    .bind(s.max_slices)
    .bind(s.max_slivers)
    .bind(s.created_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Reads a site.
pub async fn get_site(c: &mut Conn, name: &str) -> Result<Option<Site>> {
    let row = sqlx::query(sql!("SELECT {COLS} FROM sites WHERE name = $1"))
        .bind(name)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(site_from).transpose()?)
}

/// All sites by name.
pub async fn list_sites(c: &mut Conn) -> Result<Vec<Site>> {
    let rows = sqlx::query(sql!("SELECT {COLS} FROM sites ORDER BY name"))
        .fetch_all(c)
        .await?;
    Ok(rows.iter().map(site_from).collect::<Result<_, _>>()?)
}

/// Deletes a site row.
pub async fn delete_site(c: &mut Conn, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM sites WHERE name = $1")
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

/// How many users, nodes and live slices reference a site.
pub async fn site_references(c: &mut Conn, name: &str) -> Result<(i64, i64, i64)> {
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM users WHERE site = $1) AS u,
                (SELECT COUNT(*) FROM nodes WHERE site = $1) AS n,
                (SELECT COUNT(*) FROM slices WHERE site = $1 AND life = 'live') AS s",
    )
    .bind(name)
    .fetch_one(c)
    .await?;
    Ok((r.try_get("u")?, r.try_get("n")?, r.try_get("s")?))
}

/// A site's own image storage quota in bytes (0 = none), if an admin set one.
pub async fn site_image_quota(c: &mut Conn, site: &str) -> Result<Option<u64>> {
    let row = sqlx::query("SELECT quota FROM site_image_quotas WHERE site = $1")
        .bind(site)
        .fetch_optional(c)
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("quota"))
        .transpose()?
        .map(|q| q.max(0) as u64))
}

/// Sets a site's image storage quota (`Some`), or removes its override (`None`).
pub async fn set_site_image_quota(
    c: &mut Conn,
    site: &str,
    quota: Option<u64>,
    by: &str,
    now: i64,
) -> Result<()> {
    match quota {
        Some(q) => {
            sqlx::query(
                "INSERT INTO site_image_quotas (site, quota, set_by, set_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (site) DO UPDATE SET quota = excluded.quota, set_by = excluded.set_by, \
                 set_at = excluded.set_at",
            )
            .bind(site)
            .bind(i64::try_from(q).unwrap_or(i64::MAX))
            .bind(by)
            .bind(now)
            .execute(c)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM site_image_quotas WHERE site = $1")
                .bind(site)
                .execute(c)
                .await?;
        }
    }
    Ok(())
}
