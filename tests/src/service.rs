//! A `slice-service` child process with its own data directory and database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{bin, wait_for};

/// One CA for the services of this test process (`--ca-cert`/`--ca-key`), so that every
/// client a test starts, `slicectl` included (`SLICECTL_CA_CERT`), trusts them all without
/// being told which service it talks to. `Service::start_own_ca` tests the service's own.
pub fn test_ca() -> &'static (PathBuf, PathBuf) {
    static CA: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new()
            .prefix("slicebed-test-ca")
            .tempdir()
            .expect("tempdir")
            .keep();
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Slicebed test CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).expect("CA certificate");
        let (c, k) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&k)
            .unwrap();
        std::io::Write::write_all(&mut f, key.serialize_pem().as_bytes()).unwrap();
        (c, k)
    })
}

/// How a test service does TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tls {
    /// `--tls auto` with the process's test CA.
    Auto,
    /// `--tls auto` with the CA the service creates in its data directory.
    OwnCa,
    /// `--tls-cert`/`--tls-key` files (a self-signed certificate for "localhost").
    Files(PathBuf, PathBuf),
}

/// A running service. Killed (SIGKILL) when dropped.
pub struct Service {
    pub dir: PathBuf,
    pub addr: String,
    pub admin_token: String,
    pub database_url: String,
    tls: Tls,
    /// The CA that signs node certificates.
    node_ca: PathBuf,
    child: Option<Child>,
    _tmp: Option<TempDir>,
    extra_config: String,
    listen: String,
    url: String,
}

/// A fresh database URL: a new SQLite file under `dir`, or a new PostgreSQL database.
pub async fn fresh_database(dir: &Path) -> String {
    match std::env::var("SLICEBED_TEST_POSTGRES") {
        Ok(base) if !base.is_empty() => {
            use sqlx::Connection;
            let name = format!("sbtest_{}", uuid_like());
            let mut c = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to SLICEBED_TEST_POSTGRES");
            sqlx::Executor::execute(
                &mut c,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .expect("create database");
            let (prefix, _) = base
                .rsplit_once('/')
                .expect("postgres URL with a database path");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("slicebed.db").display()),
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

impl Service {
    /// Starts a service on a fresh database with a config file holding `extra_config` (TOML).
    pub async fn start_with(extra_config: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let database_url = fresh_database(tmp.path()).await;
        let mut s = Service {
            dir,
            addr: String::new(),
            admin_token: String::new(),
            database_url,
            tls: Tls::Auto,
            node_ca: test_ca().0.clone(),
            child: None,
            _tmp: Some(tmp),
            extra_config: extra_config.to_string(),
            listen: "127.0.0.1:0".into(),
            url: String::new(),
        };
        s.spawn().await;
        s
    }

    /// Starts a service with defaults, except a fast liveness TTL for tests.
    pub async fn start() -> Self {
        Self::start_with("[nodes]\nheartbeat_interval = \"500ms\"\nmissed_heartbeats = 3\n").await
    }

    /// Starts a service (fast liveness TTL) that creates its own CA in its data directory
    /// under `--tls auto`, with `nodes` (TOML lines) added to its `[nodes]` table.
    pub async fn start_own_ca(nodes: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(tmp.path()).await;
        let mut s = Service {
            dir: tmp.path().join("data"),
            addr: String::new(),
            admin_token: String::new(),
            database_url,
            node_ca: tmp.path().join("data").join("ca.crt"),
            tls: Tls::OwnCa,
            child: None,
            _tmp: Some(tmp),
            extra_config: format!(
                "[nodes]\nheartbeat_interval = \"500ms\"\nmissed_heartbeats = 3\n{nodes}\n"
            ),
            listen: "127.0.0.1:0".into(),
            url: String::new(),
        };
        s.spawn().await;
        s
    }

    /// Starts a TLS service with a self-signed certificate for "localhost" given as files.
    pub async fn start_tls() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let cert_path = tmp.path().join("cert.pem");
        let key_path = tmp.path().join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        // The service refuses a key other users may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let database_url = fresh_database(tmp.path()).await;
        let mut s = Service {
            dir: tmp.path().join("data"),
            addr: String::new(),
            admin_token: String::new(),
            database_url,
            tls: Tls::Files(cert_path, key_path),
            node_ca: test_ca().0.clone(),
            child: None,
            _tmp: Some(tmp),
            extra_config: String::new(),
            listen: "127.0.0.1:0".into(),
            url: String::new(),
        };
        s.spawn().await;
        s
    }

    /// `https://localhost:port` (every test service serves TLS: nodes speak only mTLS).
    pub fn url(&self) -> String {
        format!(
            "https://localhost:{}",
            self.addr.rsplit_once(':').unwrap().1
        )
    }

    /// The URL as a string slice borrowed from the service (for argument lists).
    pub fn url_str(&self) -> &str {
        &self.url
    }

    /// CA certificate clients must trust for the service's certificate.
    pub fn ca_cert(&self) -> Option<&Path> {
        Some(match &self.tls {
            Tls::Auto => test_ca().0.as_path(),
            Tls::OwnCa => self.node_ca.as_path(),
            Tls::Files(c, _) => c.as_path(),
        })
    }

    /// The CA that signs node certificates.
    pub fn node_ca(&self) -> &Path {
        &self.node_ca
    }

    async fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let _ = std::fs::remove_file(self.dir.join("service.addr"));
        let cfg = self.dir.parent().unwrap().join("service.toml");
        std::fs::write(&cfg, &self.extra_config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.parent().unwrap().join("service.log"))
            .unwrap();
        let mut cmd = Command::new(bin("slice-service"));
        cmd.arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log);
        match &self.tls {
            Tls::Files(c, k) => {
                cmd.arg("--tls-cert").arg(c).arg("--tls-key").arg(k);
                let (ca, ca_key) = test_ca();
                cmd.arg("--ca-cert").arg(ca).arg("--ca-key").arg(ca_key);
            }
            Tls::Auto => {
                let (ca, ca_key) = test_ca();
                cmd.arg("--ca-cert").arg(ca).arg("--ca-key").arg(ca_key);
            }
            Tls::OwnCa => {}
        }
        self.child = Some(cmd.spawn().expect("spawn slice-service"));
        let addr_file = self.dir.join("service.addr");
        let log_path = self.log_path();
        let child = self.child.as_mut().unwrap();
        let addr = wait_for("slice-service to listen", Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten();
            let addr = std::fs::read_to_string(&addr_file)
                .ok()
                .filter(|s| !s.is_empty());
            if let Some(status) = exited {
                panic!(
                    "slice-service exited with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            async move { addr }
        })
        .await;
        self.addr = addr.trim().to_string();
        self.url = self.url();
        self.admin_token = std::fs::read_to_string(self.dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
    }

    /// The process id of the running service, if one runs (benchmarks read its CPU and
    /// memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The service's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.parent().unwrap().join("service.log")
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for a graceful exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        signal(c.id(), libc::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts the same service again on the same data directory and database (new port).
    pub async fn restart(&mut self) {
        self.kill();
        self.listen = "127.0.0.1:0".into();
        self.spawn().await;
    }

    /// Kills the service and starts it again on the same address, as a real restart would.
    pub async fn restart_in_place(&mut self) {
        self.kill();
        self.listen = self.addr.clone();
        self.spawn().await;
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the service said; the temporary directory goes away.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- slice-service log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
