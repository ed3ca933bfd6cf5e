//! `[images]` and `[registry]` in the service's config file: sizes as people write them
//! (`20Gi`), durations likewise; unknown keys refused.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[images]`: limits of the image store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesFileConfig {
    /// Largest blob (layer) a push may upload (2Gi).
    #[serde(default, deserialize_with = "size")]
    pub max_blob_size: Option<u64>,
    /// Largest image, manifest + config + layers (4Gi).
    #[serde(default, deserialize_with = "size")]
    pub max_image_size: Option<u64>,
    /// Bytes of distinct blobs the images of one site may hold (20Gi; "0" = no quota).
    #[serde(default, deserialize_with = "size")]
    pub site_quota: Option<u64>,
    /// How long an unreferenced blob or an unfinished upload is kept for a push that may still
    /// commit it (1h).
    #[serde(default, deserialize_with = "crate::config::human_duration")]
    pub gc_grace: Option<Duration>,
    /// How often the garbage collector sweeps (1h).
    #[serde(default, deserialize_with = "crate::config::human_duration")]
    pub gc_interval: Option<Duration>,
}

/// `[registry]`: the read-only OCI Distribution API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFileConfig {
    /// Serve `/v2/` (plain HTTP) on this address; off unless given. Port 0 picks a free port
    /// and writes it to `<data_dir>/registry.addr`. Off loopback it needs `insecure` (put a
    /// TLS reverse proxy in front in production).
    pub listen: Option<String>,
    /// The address ("host:port") Kubernetes sites pull pinned images from, when it is not the
    /// listen address (a TLS reverse proxy in front); sent with each pull credential.
    pub advertise: Option<String>,
}

/// The effective image store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    pub max_blob_size: u64,
    pub max_image_size: u64,
    /// 0 = no quota.
    pub site_quota: u64,
    pub gc_grace: Duration,
    pub gc_interval: Duration,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImagesFileConfig::default().effective()
    }
}

impl ImagesFileConfig {
    /// Defaults filled in.
    pub fn effective(&self) -> ImageSettings {
        const GI: u64 = 1 << 30;
        ImageSettings {
            max_blob_size: self.max_blob_size.unwrap_or(2 * GI),
            max_image_size: self.max_image_size.unwrap_or(4 * GI),
            site_quota: self.site_quota.unwrap_or(20 * GI),
            gc_grace: self.gc_grace.unwrap_or(Duration::from_secs(3600)),
            gc_interval: self.gc_interval.unwrap_or(Duration::from_secs(3600)),
        }
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "0" {
        return Ok(Some(0));
    }
    slicebed_units::parse_size(&text)
        .map(|n| Some(n.max(0) as u64))
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_defaults() {
        let c: ImagesFileConfig =
            toml::from_str("max_blob_size = \"1Mi\"\nsite_quota = \"0\"\ngc_grace = \"5m\"")
                .unwrap();
        let s = c.effective();
        assert_eq!(s.max_blob_size, 1 << 20);
        assert_eq!(s.site_quota, 0);
        assert_eq!(s.gc_grace, Duration::from_secs(300));
        assert_eq!(s.max_image_size, 4 << 30);
        assert!(toml::from_str::<ImagesFileConfig>("max_blob = \"1Mi\"").is_err());
        assert!(toml::from_str::<ImagesFileConfig>("max_blob_size = \"lots\"").is_err());
    }
}
