//! Service configuration: command-line flags merged over an optional TOML file, then defaults.
//! Unknown keys in the file are an error, never a silent default; durations are written as
//! people write them (`default = "14d"`, `heartbeat_interval = "500ms"`).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};

/// Longest duration any setting may have: times are epoch milliseconds in an i64.
const MAX_SETTING: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Where the service listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

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
    /// TLS private key (PEM); mode 0600 or the service refuses to start.
    pub tls_key: Option<PathBuf>,
    /// `auto` (default: a server certificate from the service's own CA) or `off` (plaintext,
    /// loopback only unless `insecure`); ignored when `tls_cert` and `tls_key` are given.
    pub tls: Option<String>,
    /// Extra DNS names or addresses for the `auto` server certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Allow plaintext off loopback.
    pub insecure: Option<bool>,
    /// The CA that signs node certificates (PEM); default `<data_dir>/ca.crt`, created on
    /// first start.
    pub ca_cert: Option<PathBuf>,
    /// Its key (PEM, mode 0600); default `<data_dir>/ca.key`.
    pub ca_key: Option<PathBuf>,
    /// Lease settings.
    #[serde(default)]
    pub lease: LeaseConfig,
    /// Node liveness settings.
    #[serde(default)]
    pub nodes: NodeConfig,
    /// Default lifetime of user tokens (90 days).
    #[serde(default, deserialize_with = "human")]
    pub token_ttl: Option<Duration>,
    /// Lifetime of the bootstrap admin token (30 days); rotate it with `slicectl token rotate`.
    #[serde(default, deserialize_with = "human")]
    pub admin_token_ttl: Option<Duration>,
    /// Caps that keep one client from slowing the others.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Operator metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The web status page.
    #[serde(default)]
    pub web: WebConfig,
    /// Request tracing.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// The image store's limits (`docs/images.md`).
    #[serde(default)]
    pub images: crate::images::ImagesFileConfig,
    /// The read-only OCI Distribution API (`docs/images.md`).
    #[serde(default)]
    pub registry: crate::images::RegistryFileConfig,
}

/// Request tracing (`docs/operations.md`, "Request ids and tracing").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Export a span per call to this OTLP/gRPC collector (`http://HOST:4317`); off unless
    /// given.
    pub otlp_endpoint: Option<String>,
}

/// The web status page (`docs/operations.md`, "The status page").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the status page (plain HTTP) on this address; off unless given. Port 0 picks a
    /// free port and writes it to `<data_dir>/web.addr`. Off loopback it needs `insecure`.
    pub listen: Option<String>,
}

/// Operator metrics (`docs/operations.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text) over plain HTTP on this address; off unless
    /// given. Port 0 picks a free port and writes it to `<data_dir>/metrics.addr`.
    pub listen: Option<String>,
}

/// Caps on streams and connections, and the database's read connections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent WatchEvents streams per user (32).
    pub watch_streams_per_user: Option<usize>,
    /// Concurrent Exec calls, commands and shells, per user (32).
    pub exec_streams_per_user: Option<usize>,
    /// Concurrent Logs calls per user (32).
    pub logs_streams_per_user: Option<usize>,
    /// Concurrent CopyTo and CopyFrom calls per user (32).
    pub copy_streams_per_user: Option<usize>,
    /// Open connections, authenticated or not (4096; mind the process's file limit); more are
    /// closed as soon as they are accepted.
    pub max_connections: Option<usize>,
    /// A new connection that makes no call within this is closed (10 s); calls answered
    /// UNAUTHENTICATED do not count.
    #[serde(default, deserialize_with = "human")]
    pub first_request_timeout: Option<Duration>,
    /// A connection with no call in progress for this long is closed (5 min).
    #[serde(default, deserialize_with = "human")]
    pub idle_timeout: Option<Duration>,
    /// Read connections to an SQLite database beside its one writer (4).
    pub sqlite_read_connections: Option<u32>,
}

/// Effective limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub streams: crate::limits::StreamCaps,
    pub max_connections: usize,
    pub first_request_timeout: Duration,
    pub idle_timeout: Duration,
    pub sqlite_read_connections: u32,
}

impl LimitsConfig {
    fn effective(&self) -> anyhow::Result<Limits> {
        fn cap(key: &str, v: Option<usize>, default: usize) -> anyhow::Result<usize> {
            match v {
                Some(0) => anyhow::bail!("limits.{key} must be at least 1"),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        }
        Ok(Limits {
            streams: crate::limits::StreamCaps {
                watch: cap("watch_streams_per_user", self.watch_streams_per_user, 32)?,
                exec: cap("exec_streams_per_user", self.exec_streams_per_user, 32)?,
                logs: cap("logs_streams_per_user", self.logs_streams_per_user, 32)?,
                copy: cap("copy_streams_per_user", self.copy_streams_per_user, 32)?,
            },
            max_connections: cap("max_connections", self.max_connections, 4096)?,
            first_request_timeout: self
                .first_request_timeout
                .unwrap_or(Duration::from_secs(10))
                .min(MAX_SETTING),
            idle_timeout: self
                .idle_timeout
                .unwrap_or(Duration::from_secs(300))
                .min(MAX_SETTING),
            sqlite_read_connections: cap(
                "sqlite_read_connections",
                self.sqlite_read_connections.map(|n| n as usize),
                crate::store::DEFAULT_SQLITE_READERS as usize,
            )?
            .min(64) as u32,
        })
    }
}

/// Lease lengths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Default lease (14 days).
    #[serde(default, deserialize_with = "human")]
    pub default: Option<Duration>,
    /// Longest lease (8 weeks).
    #[serde(default, deserialize_with = "human")]
    pub max: Option<Duration>,
    /// How often the expiry reaper runs (1 s).
    #[serde(default, deserialize_with = "human")]
    pub reap_interval: Option<Duration>,
}

/// Node liveness.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Heartbeat interval asked of nodes (10 s).
    #[serde(default, deserialize_with = "human")]
    pub heartbeat_interval: Option<Duration>,
    /// Missed heartbeats after which a node is unreachable (3).
    pub missed_heartbeats: Option<u32>,
    /// Lifetime of node client certificates (7 days); nodes renew them at 2/3 of it.
    #[serde(default, deserialize_with = "human")]
    pub cert_ttl: Option<Duration>,
}

/// How the service speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A server certificate issued by the service's own CA at every start.
    Auto,
    /// Plaintext: loopback only unless `insecure`. Nodes cannot connect (they need mTLS).
    Off,
    /// Certificate and key from files.
    Files { cert: PathBuf, key: PathBuf },
}

impl TlsMode {
    /// `auto` or `off`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            other => anyhow::bail!("tls must be \"auto\" or \"off\", not {other:?} (give a certificate with --tls-cert and --tls-key)"),
        }
    }
}

/// What was given on the command line; `None` means "not given", so a flag that happens to
/// equal a default still wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--tls auto|off`.
    pub tls: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
    /// `--ca-key`.
    pub ca_key: Option<PathBuf>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `--web-listen`.
    pub web_listen: Option<String>,
    /// `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
    /// `--registry-listen`.
    pub registry_listen: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How TLS is served (`pki::server_tls`).
    pub tls: TlsMode,
    pub tls_names: Vec<String>,
    /// Plaintext off loopback allowed.
    pub insecure: bool,
    /// The node CA, when not the data directory's own.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Lifetime of node client certificates.
    pub node_cert_ttl: Duration,
    pub lease_default: Duration,
    pub lease_max: Duration,
    pub reap_interval: Duration,
    pub heartbeat_interval: Duration,
    pub node_ttl: Duration,
    pub token_ttl: Duration,
    /// Lifetime of the bootstrap admin token and of the tokens `slicectl token rotate` gives
    /// admins (30 days).
    pub admin_token_ttl: Duration,
    pub limits: Limits,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<String>,
    /// Where the status page is served, if anywhere.
    pub web_listen: Option<String>,
    /// The OTLP collector spans are exported to, if any (checked to be an http(s) URL).
    pub otlp_endpoint: Option<String>,
    /// The image store's limits.
    pub images: crate::images::ImageSettings,
    /// Where the read-only OCI Distribution API is served, if anywhere.
    pub registry_listen: Option<String>,
    /// The registry's address as Kubernetes sites reach it (`[registry] advertise`); the
    /// bound address when unset.
    pub registry_advertise: Option<String>,
}

impl Config {
    /// Effective configuration for a data directory with all defaults (used by tests).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let flags = Flags {
            data_dir: Some(data_dir.into()),
            ..Flags::default()
        };
        Self::merge(flags, FileConfig::default()).expect("a data dir is given")
    }

    /// Flags over the file over defaults. `database_url` falls back to an SQLite file in the
    /// data directory. Fails only when no data directory is given anywhere, or the lease
    /// settings contradict each other.
    pub fn merge(flags: Flags, file: FileConfig) -> anyhow::Result<Self> {
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .ok_or_else(|| anyhow::anyhow!("--data-dir is required (or data_dir in --config)"))?;
        let database_url = flags.database_url.or(file.database_url).unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("slicebed.db").display()
            )
        });
        let heartbeat_interval = file
            .nodes
            .heartbeat_interval
            .unwrap_or(Duration::from_secs(10));
        let missed = file.nodes.missed_heartbeats.unwrap_or(3).max(1);
        let lease_default = file
            .lease
            .default
            .unwrap_or(Duration::from_secs(14 * 86_400));
        let lease_max = file.lease.max.unwrap_or(Duration::from_secs(56 * 86_400));
        if lease_default > lease_max {
            anyhow::bail!(
                "lease.default ({}s) is longer than lease.max ({}s)",
                lease_default.as_secs(),
                lease_max.as_secs()
            );
        }
        let token_ttl = file.token_ttl.unwrap_or(Duration::from_secs(90 * 86_400));
        let admin_token_ttl = file
            .admin_token_ttl
            .unwrap_or(Duration::from_secs(30 * 86_400));
        let reap_interval = file.lease.reap_interval.unwrap_or(Duration::from_secs(1));
        let node_cert_ttl = file
            .nodes
            .cert_ttl
            .unwrap_or(Duration::from_secs(7 * 86_400));
        let otlp_endpoint = match (flags.otlp_endpoint, file.tracing.otlp_endpoint) {
            (Some(url), _) => Some(("--otlp-endpoint", url)),
            (None, Some(url)) => Some(("tracing.otlp_endpoint", url)),
            (None, None) => None,
        };
        if let Some((source, url)) = &otlp_endpoint {
            crate::trace::otlp::check_endpoint(source, url)?;
        }
        let tls_cert = flags.tls_cert.or(file.tls_cert);
        let tls_key = flags.tls_key.or(file.tls_key);
        let tls = match (&tls_cert, &tls_key) {
            (Some(cert), Some(key)) => TlsMode::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None) => TlsMode::parse(flags.tls.or(file.tls).as_deref().unwrap_or("auto"))?,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        // Times are epoch milliseconds in an i64: refuse what cannot be added to now.
        for (key, d) in [
            ("lease.default", lease_default),
            ("lease.max", lease_max),
            ("lease.reap_interval", reap_interval),
            ("nodes.heartbeat_interval", heartbeat_interval),
            ("token_ttl", token_ttl),
            ("admin_token_ttl", admin_token_ttl),
            ("nodes.cert_ttl", node_cert_ttl),
        ] {
            if d > MAX_SETTING {
                anyhow::bail!(
                    "{key} of {}s is too long (at most {} days)",
                    d.as_secs(),
                    MAX_SETTING.as_secs() / 86_400
                );
            }
        }
        Ok(Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            data_dir,
            database_url,
            tls_cert,
            tls_key,
            tls,
            tls_names: file.tls_names,
            insecure: flags.insecure || file.insecure.unwrap_or(false),
            ca_cert: flags.ca_cert.or(file.ca_cert),
            ca_key: flags.ca_key.or(file.ca_key),
            node_cert_ttl,
            lease_default,
            lease_max,
            reap_interval,
            heartbeat_interval,
            node_ttl: heartbeat_interval.saturating_mul(missed.min(1000)),
            token_ttl,
            admin_token_ttl,
            limits: file.limits.effective()?,
            metrics_listen: flags.metrics_listen.or(file.metrics.listen),
            web_listen: flags.web_listen.or(file.web.listen),
            otlp_endpoint: otlp_endpoint.map(|(_, url)| url),
            images: file.images.effective(),
            registry_listen: flags.registry_listen.or(file.registry.listen),
            registry_advertise: file.registry.advertise,
        })
    }
}

/// Reads a duration as people write it: `14d`, `1d12h`, `30s`, or `500ms` for the short
/// intervals of tests and tuning.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return match ms.parse::<u64>() {
            Ok(0) => Err("duration must be longer than zero".into()),
            Ok(n) => Ok(Duration::from_millis(n)),
            Err(_) => Err(format!("{text:?}: expected whole milliseconds like 500ms")),
        };
    }
    slicebed_units::parse_duration(t)
        .map(|s| Duration::from_secs(s.unsigned_abs()))
        .map_err(|e| format!("{text:?}: {e}"))
}

/// `human` for other modules' config sections.
pub(crate) fn human_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    human(d)
}

fn human<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_documented_example_is_the_defaults() {
        let text = include_str!("../../docs/examples/slice-service.toml");
        let c = Config::merge(Flags::default(), file(text)).unwrap();
        let d = Config::for_data_dir("/var/lib/slicebed");
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.database_url, d.database_url);
        assert_eq!(c.token_ttl, d.token_ttl);
        assert_eq!(c.admin_token_ttl, d.admin_token_ttl);
        assert_eq!(c.lease_default, d.lease_default);
        assert_eq!(c.lease_max, d.lease_max);
        assert_eq!(c.reap_interval, d.reap_interval);
        assert_eq!(c.heartbeat_interval, d.heartbeat_interval);
        assert_eq!(c.node_ttl, d.node_ttl);
        assert_eq!(c.limits, d.limits);
        assert_eq!(c.tls, d.tls);
        assert_eq!(c.node_cert_ttl, d.node_cert_ttl);
        assert_eq!(c.metrics_listen, d.metrics_listen);
        assert_eq!(c.web_listen, d.web_listen);
        assert_eq!(c.otlp_endpoint, d.otlp_endpoint);
    }

    #[test]
    fn otlp_export_is_off_unless_asked_the_flag_wins_and_bad_urls_name_their_setting() {
        let flags = Flags {
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        assert_eq!(Config::for_data_dir("/d").otlp_endpoint, None);
        let f = file("[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\n");
        let c = Config::merge(flags.clone(), f.clone()).unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        let with_flag = |url: &str| Flags {
            otlp_endpoint: Some(url.into()),
            ..flags.clone()
        };
        let c = Config::merge(with_flag("http://otel:4317"), f.clone()).unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://otel:4317"));
        let e = Config::merge(with_flag("otel:4317"), f)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--otlp-endpoint \"otel:4317\""), "{e}");
        let f = file("[tracing]\notlp_endpoint = \"udp://x\"\n");
        let e = Config::merge(flags, f).unwrap_err().to_string();
        assert!(e.starts_with("tracing.otlp_endpoint \"udp://x\""), "{e}");
        assert!(toml::from_str::<FileConfig>("[tracing]\nendpoint = \"x\"\n").is_err());
    }

    #[test]
    fn metrics_are_off_unless_asked_and_the_flag_wins() {
        let flags = Flags {
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        assert_eq!(Config::for_data_dir("/d").metrics_listen, None);
        let f = file("[metrics]\nlisten = \"127.0.0.1:9464\"\n");
        let c = Config::merge(flags.clone(), f.clone()).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
        let c = Config::merge(
            Flags {
                metrics_listen: Some("127.0.0.1:0".into()),
                ..flags
            },
            f,
        )
        .unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        assert!(toml::from_str::<FileConfig>("[metrics]\nport = 1\n").is_err());
    }

    #[test]
    fn the_status_page_is_off_unless_asked_and_the_flag_wins() {
        let flags = Flags {
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        assert_eq!(Config::for_data_dir("/d").web_listen, None);
        let f = file("[web]\nlisten = \"127.0.0.1:8080\"\n");
        let c = Config::merge(flags.clone(), f.clone()).unwrap();
        assert_eq!(c.web_listen.as_deref(), Some("127.0.0.1:8080"));
        let flags = Flags {
            web_listen: Some("127.0.0.1:0".into()),
            ..flags
        };
        let c = Config::merge(flags, f).unwrap();
        assert_eq!(c.web_listen.as_deref(), Some("127.0.0.1:0"));
        assert!(toml::from_str::<FileConfig>("[web]\nport = 80\n").is_err());
    }

    #[test]
    fn limits_read_from_the_file_and_zero_is_refused() {
        let f = file(
            "[limits]\nwatch_streams_per_user = 5\nfirst_request_timeout = \"2s\"\n\
             idle_timeout = \"1m\"\nmax_connections = 100\n",
        );
        let flags = Flags {
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        let c = Config::merge(flags.clone(), f).unwrap();
        assert_eq!(c.limits.streams.watch, 5);
        assert_eq!(c.limits.streams.exec, 32);
        assert_eq!(c.limits.first_request_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections, 100);
        let e = Config::merge(flags, file("[limits]\nexec_streams_per_user = 0\n")).unwrap_err();
        assert!(
            e.to_string().contains("limits.exec_streams_per_user"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("[lease]\ndefault_secs = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_secs"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = Config::for_data_dir("/tmp/x");
        assert_eq!(c.lease_default, Duration::from_secs(14 * 86_400));
        assert_eq!(c.lease_max, Duration::from_secs(56 * 86_400));
        assert_eq!(c.node_ttl, Duration::from_secs(30));
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert!(c.database_url.starts_with("sqlite:///tmp/x/slicebed.db"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let f = file(
            "token_ttl = \"30d\"\n[lease]\ndefault = \"1d12h\"\nmax = \"2w\"\n\
             reap_interval = \"100ms\"\n[nodes]\nheartbeat_interval = \"500ms\"\n\
             missed_heartbeats = 4\n",
        );
        let c = Config::merge(
            Flags {
                data_dir: Some("/d".into()),
                ..Default::default()
            },
            f,
        )
        .unwrap();
        assert_eq!(c.lease_default, Duration::from_secs(36 * 3600));
        assert_eq!(c.lease_max, Duration::from_secs(14 * 86_400));
        assert_eq!(c.reap_interval, Duration::from_millis(100));
        assert_eq!(c.node_ttl, Duration::from_secs(2));
        assert_eq!(c.token_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn bad_durations_name_the_key_and_the_value() {
        for (text, want) in [
            ("[lease]\ndefault = \"soon\"\n", "\"soon\""),
            ("[lease]\nmax = \"-5m\"\n", "longer than zero"),
            (
                "[nodes]\nheartbeat_interval = \"0ms\"\n",
                "longer than zero",
            ),
            ("[lease]\ndefault = 3600\n", "default"),
        ] {
            let e = toml::from_str::<FileConfig>(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_flag_wins_over_the_file_even_when_it_equals_the_default() {
        let f = file("listen = \"0.0.0.0:9000\"\ndata_dir = \"/file\"\n");
        let flags = Flags {
            listen: Some(DEFAULT_LISTEN.into()),
            ..Default::default()
        };
        let c = Config::merge(flags, f.clone()).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("/file"));
        let c = Config::merge(Flags::default(), f).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
    }

    #[test]
    fn absurd_durations_are_refused_naming_the_key() {
        let f = file("data_dir = \"/d\"\ntoken_ttl = \"100000000d\"\n");
        let e = Config::merge(Flags::default(), f).unwrap_err().to_string();
        assert!(e.starts_with("token_ttl of "), "{e}");
        let f = file("data_dir = \"/d\"\n[lease]\nreap_interval = \"9999999999999ms\"\n");
        let e = Config::merge(Flags::default(), f).unwrap_err().to_string();
        assert!(e.starts_with("lease.reap_interval of "), "{e}");
    }

    #[test]
    fn contradictions_and_missing_data_dir_are_refused() {
        let e = Config::merge(Flags::default(), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--data-dir"), "{e}");
        let f = file("data_dir = \"/d\"\n[lease]\ndefault = \"9w\"\n");
        let e = Config::merge(Flags::default(), f).unwrap_err();
        assert!(e.to_string().contains("lease.default"), "{e}");
    }
}
