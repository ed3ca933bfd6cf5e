//! Service configuration: command-line flags merged over an optional TOML file.
//! Unknown keys in the file are an error, never a silent default.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Tunables read from `--config FILE`. Every field is optional; flags win over the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// sqlx database URL.
    pub database_url: Option<String>,
    /// TLS certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Lease settings.
    #[serde(default)]
    pub lease: LeaseConfig,
    /// Node liveness settings.
    #[serde(default)]
    pub nodes: NodeConfig,
    /// Default lifetime of user tokens, in seconds.
    pub token_ttl_secs: Option<u64>,
}

/// Lease lengths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Default lease, seconds (14 days).
    pub default_secs: Option<u64>,
    /// Longest lease, seconds (8 weeks).
    pub max_secs: Option<u64>,
    /// How often the expiry reaper runs, milliseconds.
    pub reap_interval_ms: Option<u64>,
}

/// Node liveness.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Heartbeat interval asked of nodes, milliseconds (10 s).
    pub heartbeat_interval_ms: Option<u64>,
    /// Missed heartbeats after which a node is unreachable (3).
    pub missed_heartbeats: Option<u32>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub lease_default: Duration,
    pub lease_max: Duration,
    pub reap_interval: Duration,
    pub heartbeat_interval: Duration,
    pub node_ttl: Duration,
    pub token_ttl: Duration,
}

impl Config {
    /// Effective configuration for a data directory with all defaults (used by tests).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self::resolve(data_dir.into(), None, FileConfig::default())
    }

    /// Resolves defaults; `database_url` falls back to an SQLite file in the data directory.
    pub fn resolve(data_dir: PathBuf, database_url: Option<String>, file: FileConfig) -> Self {
        let database_url = database_url.or(file.database_url).unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("slicebed.db").display()
            )
        });
        let heartbeat_interval =
            Duration::from_millis(file.nodes.heartbeat_interval_ms.unwrap_or(10_000));
        let missed = file.nodes.missed_heartbeats.unwrap_or(3).max(1);
        Self {
            data_dir,
            database_url,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            lease_default: Duration::from_secs(file.lease.default_secs.unwrap_or(14 * 86_400)),
            lease_max: Duration::from_secs(file.lease.max_secs.unwrap_or(56 * 86_400)),
            reap_interval: Duration::from_millis(file.lease.reap_interval_ms.unwrap_or(1_000)),
            heartbeat_interval,
            node_ttl: heartbeat_interval * missed,
            token_ttl: Duration::from_secs(file.token_ttl_secs.unwrap_or(90 * 86_400)),
        }
    }
}

/// Reads and parses a TOML config file.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<FileConfig> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("[lease]\ndefault_sec = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_sec"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = Config::for_data_dir("/tmp/x");
        assert_eq!(c.lease_default, Duration::from_secs(14 * 86_400));
        assert_eq!(c.lease_max, Duration::from_secs(56 * 86_400));
        assert_eq!(c.node_ttl, Duration::from_secs(30));
        assert!(c.database_url.starts_with("sqlite:///tmp/x/slicebed.db"));
    }
}
