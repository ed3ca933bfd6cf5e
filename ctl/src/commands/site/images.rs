//! The image store's side of sites: `slicectl site set NAME --image-quota SIZE` (admins), and
//! how `site list` and `site show` print a site's image storage (used, reserved, quota).

use anyhow::{bail, Result};
use serde::Serialize;
use slicebed_proto::v1::{self as pb, SetSiteImageQuotaRequest};

use crate::{commands::access::cp::human_bytes, output::view::SiteView};

/// What `--image-quota` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaArg {
    /// Back to the service's default (`images.site_quota`).
    Default,
    /// Bytes; 0 = no quota.
    Bytes(u64),
}

/// `20Gi`, `20GiB`, `500M`, `none` (no quota) or `default`.
pub fn parse_quota(s: &str) -> Result<QuotaArg, String> {
    let t = s.trim();
    match t {
        "default" => return Ok(QuotaArg::Default),
        "none" | "unlimited" | "0" => return Ok(QuotaArg::Bytes(0)),
        _ => {}
    }
    // `GiB` is how people write it; the shared parser takes `Gi`.
    let t = t
        .strip_suffix("iB")
        .map_or(t.to_string(), |n| format!("{n}i"));
    crate::quantity::parse_size(&t)
        .map(|b| QuotaArg::Bytes(b as u64))
        .map_err(|e| format!("{e} (or none, or default)"))
}

/// The request that sets `site`'s quota.
pub fn request(site: String, q: Option<QuotaArg>) -> Result<SetSiteImageQuotaRequest> {
    let Some(q) = q else {
        bail!("nothing to set: give --image-quota SIZE (or none, or default)");
    };
    Ok(SetSiteImageQuotaRequest {
        site,
        quota_bytes: match q {
            QuotaArg::Default => None,
            QuotaArg::Bytes(b) => Some(b),
        },
    })
}

/// `12.0 MiB / 20.0 GiB`: used (and reserved) over the quota, for the site table.
pub fn cell(s: &pb::Site) -> String {
    let Some(i) = s.images else {
        return String::new();
    };
    let quota = if i.quota_bytes == 0 {
        "no quota".to_string()
    } else {
        human_bytes(i.quota_bytes)
    };
    let reserved = if i.reserved_bytes > 0 {
        format!(" (+{} uploading)", human_bytes(i.reserved_bytes))
    } else {
        String::new()
    };
    format!("{}{reserved} / {quota}", human_bytes(i.used_bytes))
}

/// The `Image storage` line of `site show`.
pub fn line(s: &pb::Site) -> String {
    let Some(i) = s.images else {
        return String::new();
    };
    let whose = if i.quota_overridden {
        "this site's own quota"
    } else {
        "the service's default quota"
    };
    let mut text = format!("{}, {whose}", cell(s));
    if i.quota_bytes > 0 && i.used_bytes + i.reserved_bytes >= i.quota_bytes {
        text.push_str(" — full: new pushes are refused");
    }
    text
}

/// A site with its image storage, for `-o json`.
#[derive(Debug, Serialize)]
pub struct SiteJson {
    #[serde(flatten)]
    pub site: SiteView,
    pub images: Option<ImagesJson>,
}

/// A site's image storage in bytes.
#[derive(Debug, Serialize)]
pub struct ImagesJson {
    pub used_bytes: u64,
    pub reserved_bytes: u64,
    /// 0 = no quota.
    pub quota_bytes: u64,
    pub quota_overridden: bool,
}

impl From<&pb::Site> for SiteJson {
    fn from(s: &pb::Site) -> Self {
        SiteJson {
            site: SiteView::from(s),
            images: s.images.map(|i| ImagesJson {
                used_bytes: i.used_bytes,
                reserved_bytes: i.reserved_bytes,
                quota_bytes: i.quota_bytes,
                quota_overridden: i.quota_overridden,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_as_people_write_them() {
        assert_eq!(parse_quota("20GiB"), Ok(QuotaArg::Bytes(20 << 30)));
        assert_eq!(parse_quota("20Gi"), Ok(QuotaArg::Bytes(20 << 30)));
        assert_eq!(parse_quota("500M"), Ok(QuotaArg::Bytes(500_000_000)));
        assert_eq!(parse_quota("none"), Ok(QuotaArg::Bytes(0)));
        assert_eq!(parse_quota("default"), Ok(QuotaArg::Default));
        assert!(parse_quota("lots").unwrap_err().contains("or default"));
    }

    #[test]
    fn a_full_site_says_so() {
        let s = pb::Site {
            images: Some(pb::SiteImageStorage {
                used_bytes: 3 << 20,
                reserved_bytes: 0,
                quota_bytes: 2 << 20,
                quota_overridden: true,
            }),
            ..Default::default()
        };
        assert_eq!(cell(&s), "3.0 MiB / 2.0 MiB");
        assert!(line(&s).contains("own quota") && line(&s).contains("full"));
    }
}
