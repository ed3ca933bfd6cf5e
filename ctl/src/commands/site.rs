//! `slicectl site create|list|show|set|delete`: the institutions that host nodes and users.

mod images;

use anyhow::Result;
use clap::{Args, Subcommand};
use slicebed_proto::v1::{
    self as pb, CreateSiteRequest, DeleteSiteRequest, GetSiteRequest, ListSitesRequest,
};

use crate::{
    ctx::Ctx,
    output::{self, Fields, Table},
    timefmt::rfc3339,
};
use images::SiteJson;

#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    /// Create a site (admins)
    Create(CreateArgs),
    /// List sites
    #[command(visible_alias = "ls")]
    List,
    /// Show one site
    Show {
        /// Site name
        name: String,
    },
    /// Change a site's settings (admins): its image storage quota
    Set {
        /// Site name
        name: String,
        /// Bytes the site's images may hold in the image store: 20Gi (or 20GiB), none, or
        /// default (the service's images.site_quota). Below current use, new pushes are refused
        #[arg(long, value_name = "SIZE", value_parser = images::parse_quota)]
        image_quota: Option<images::QuotaArg>,
    },
    /// Delete a site without users, nodes or live slices (admins)
    #[command(visible_alias = "rm")]
    Delete {
        /// Site name
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Site name, a DNS label such as "mit"
    pub name: String,
    /// Human name, e.g. "Massachusetts Institute of Technology"
    #[arg(long)]
    pub display_name: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    /// ISO 3166 country code, e.g. US
    #[arg(long)]
    pub country: Option<String>,
    /// Latitude in degrees
    #[arg(long, allow_negative_numbers = true, value_parser = parse_lat)]
    pub lat: Option<f64>,
    /// Longitude in degrees
    #[arg(long, allow_negative_numbers = true, value_parser = parse_lon)]
    pub lon: Option<f64>,
    /// Live slices the site's users may hold together [default: unlimited]
    #[arg(long, value_name = "N")]
    pub max_slices: Option<u32>,
    /// Live slivers the site's users may hold together [default: unlimited]
    #[arg(long, value_name = "N")]
    pub max_slivers: Option<u32>,
    /// Create it disabled: no new slivers on its nodes
    #[arg(long)]
    pub disabled: bool,
}

fn parse_degrees(s: &str, limit: f64) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= limit => Ok(v),
        _ => Err(format!("expected degrees between -{limit} and {limit}")),
    }
}

fn parse_lat(s: &str) -> Result<f64, String> {
    parse_degrees(s, 90.0)
}

fn parse_lon(s: &str) -> Result<f64, String> {
    parse_degrees(s, 180.0)
}

pub async fn run(cmd: SiteCmd, ctx: &Ctx) -> Result<()> {
    let mut c = ctx.connect().await?;
    match cmd {
        SiteCmd::Create(a) => {
            let site = pb::Site {
                name: a.name,
                display_name: a.display_name.unwrap_or_default(),
                city: a.city.unwrap_or_default(),
                country: a.country.unwrap_or_default(),
                latitude: a.lat.unwrap_or_default(),
                longitude: a.lon.unwrap_or_default(),
                enabled: !a.disabled,
                quota: Some(pb::Quota {
                    max_slices: a.max_slices.unwrap_or(0),
                    max_slivers: a.max_slivers.unwrap_or(0),
                }),
                created_at: None,
                images: None,
            };
            let site = c
                .admin
                .create_site(CreateSiteRequest { site: Some(site) })
                .await?
                .into_inner();
            if ctx.json() {
                return output::json(&SiteJson::from(&site));
            }
            output::out(&format!("Created site {}.\n", site.name))
        }
        SiteCmd::List => {
            let sites = c
                .admin
                .list_sites(ListSitesRequest {})
                .await?
                .into_inner()
                .sites;
            if ctx.json() {
                return output::json(&sites.iter().map(SiteJson::from).collect::<Vec<_>>());
            }
            if sites.is_empty() {
                return output::out("No sites yet. Create one with: slicectl site create NAME\n");
            }
            output::out(&site_table(&sites).to_string())
        }
        SiteCmd::Show { name } => {
            let site = c
                .admin
                .get_site(GetSiteRequest { name })
                .await?
                .into_inner();
            if ctx.json() {
                return output::json(&SiteJson::from(&site));
            }
            output::out(&site_fields(&site).to_string())
        }
        SiteCmd::Set { name, image_quota } => {
            let site = c
                .admin
                .set_site_image_quota(images::request(name, image_quota)?)
                .await?
                .into_inner();
            if ctx.json() {
                return output::json(&SiteJson::from(&site));
            }
            output::out(&format!(
                "Site {}: image storage {}.\n",
                site.name,
                images::line(&site)
            ))
        }
        SiteCmd::Delete { name } => {
            c.admin
                .delete_site(DeleteSiteRequest { name: name.clone() })
                .await?;
            if ctx.json() {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            output::out(&format!("Deleted site {name}.\n"))
        }
    }
}

fn location(s: &pb::Site) -> String {
    [s.city.as_str(), s.country.as_str()]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn quota(n: u32) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn site_table(sites: &[pb::Site]) -> Table {
    let mut t = Table::new([
        "NAME",
        "DISPLAY NAME",
        "LOCATION",
        "ENABLED",
        "MAX SLICES",
        "MAX SLIVERS",
        "IMAGES",
    ]);
    for s in sites {
        let q = s.quota.unwrap_or_default();
        let enabled = if s.enabled { "yes" } else { "no" };
        t.row([
            s.name.clone(),
            s.display_name.clone(),
            location(s),
            enabled.into(),
            quota(q.max_slices),
            quota(q.max_slivers),
            images::cell(s),
        ]);
    }
    t
}

fn site_fields(s: &pb::Site) -> Fields {
    let q = s.quota.unwrap_or_default();
    let mut f = Fields::new();
    f.add("Name", &s.name)
        .add("Display name", &s.display_name)
        .add("Location", location(s))
        .add(
            "Coordinates",
            format!("{:.2}, {:.2}", s.latitude, s.longitude),
        )
        .add("Enabled", if s.enabled { "yes" } else { "no" })
        .add("Max slices", quota(q.max_slices))
        .add("Max slivers", quota(q.max_slivers))
        .add("Image storage", images::line(s))
        .add(
            "Created",
            rfc3339(s.created_at.as_ref()).unwrap_or_default(),
        );
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_checked() {
        assert_eq!(
            parse_lat("-91"),
            Err("expected degrees between -90 and 90".into())
        );
        assert_eq!(parse_lon("-71.09"), Ok(-71.09));
        assert!(parse_lat("north").is_err());
    }

    #[test]
    fn site_table_shows_quota_and_location() {
        let s = pb::Site {
            name: "mit".into(),
            city: "Cambridge".into(),
            country: "US".into(),
            enabled: true,
            quota: Some(pb::Quota {
                max_slices: 0,
                max_slivers: 40,
            }),
            ..Default::default()
        };
        let text = site_table(&[s]).to_string();
        assert!(text.lines().nth(1).unwrap().starts_with("mit"));
        assert!(text.contains("Cambridge, US"));
        assert!(text.contains("unlimited"));
        assert!(text.contains("40"));
    }
}
