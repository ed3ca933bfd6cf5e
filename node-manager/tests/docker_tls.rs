//! The node manager reaches a Docker engine over TLS: a private `dockerd --tlsverify` of this
//! test on a loopback TCP port in a network namespace of its own (so it never meets the shared
//! engine), certificates made with `openssl`, and the real `node-manager` binary run in that
//! namespace importing the base image with `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, as docker's
//! own client reads them. Without TLS, or with a client certificate the engine's CA did not
//! sign, it is refused. Needs root, `dockerd`, `nsenter`, `ip` and `openssl`; skips otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Port of the engine inside its own namespace.
const PORT: u16 = 2376;

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dockerd() -> Option<PathBuf> {
    [
        "/usr/sbin/dockerd",
        "/usr/bin/dockerd",
        "/usr/local/bin/dockerd",
    ]
    .map(PathBuf::from)
    .into_iter()
    .find(|p| p.is_file())
}

/// Why this test cannot run here.
fn unavailable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    if dockerd().is_none() {
        return Some("no dockerd".into());
    }
    for (p, a) in [
        ("openssl", "version"),
        ("nsenter", "--version"),
        ("ip", "-V"),
    ] {
        if !have(p, a) {
            return Some(format!("no {p}"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("no /bin/busybox for the base image".into());
    }
    None
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in docker's file names
/// (`ca.pem`, `cert.pem`, `key.pem`) plus `server.pem`/`server-key.pem`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=slicebed test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, key, ext, cn) in [
        ("server", "server-key.pem", "server.ext", "/CN=127.0.0.1"),
        ("cert", "key.pem", "client.ext", "/CN=node"),
    ] {
        let csr = format!("{name}.csr");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", key, "-out", &csr, "-subj", cn]);
        openssl(dir, &req);
        let pem = format!("{name}.pem");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
}

/// The private engine: its directory, namespace and process; all gone on drop.
struct Engine {
    dir: tempfile::TempDir,
    netns: String,
    child: Option<Child>,
}

impl Engine {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the node manager in the engine's namespace with `env`.
    fn node_manager(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_node-manager"))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run node-manager")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let start = Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_)))
                && start.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

async fn start_engine(certs: &Path) -> Engine {
    let dir = tempfile::Builder::new()
        .prefix("sbtls")
        .tempdir_in("/tmp")
        .unwrap();
    let netns = format!("sbtls{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    assert!(have("ip", "-V"));
    let ok = Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .unwrap()
        .success()
        && Command::new("ip")
            .args(["netns", "exec", &netns, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
    assert!(ok, "cannot make network namespace {netns}");
    let driver = bollard::Docker::connect_with_local_defaults()
        .ok()
        .map(|d| async move { d.info().await.ok().and_then(|i| i.driver) });
    let driver = match driver {
        Some(f) => tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .ok()
            .flatten(),
        None => None,
    }
    .unwrap_or_else(|| "overlay2".into());
    let d = dir.path();
    std::fs::write(d.join("daemon.json"), "{}\n").unwrap();
    let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .arg(dockerd().unwrap())
        .arg("--config-file")
        .arg(d.join("daemon.json"))
        .arg("--data-root")
        .arg(d.join("data"))
        .arg("--exec-root")
        .arg(d.join("exec"))
        .arg("--pidfile")
        .arg(d.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", d.join("docker.sock").display()))
        .arg("-H")
        .arg(format!("tcp://127.0.0.1:{PORT}"))
        .arg("--tlsverify")
        .arg("--tlscacert")
        .arg(certs.join("ca.pem"))
        .arg("--tlscert")
        .arg(certs.join("server.pem"))
        .arg("--tlskey")
        .arg(certs.join("server-key.pem"))
        .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
        .args(["--storage-driver", &driver])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dockerd");
    let mut engine = Engine {
        dir,
        netns,
        child: Some(child),
    };
    let start = Instant::now();
    loop {
        if engine.socket().exists() {
            let docker = bollard::Docker::connect_with_unix(
                &engine.socket().display().to_string(),
                10,
                bollard::API_DEFAULT_VERSION,
            )
            .unwrap();
            if docker.ping().await.is_ok() {
                return engine;
            }
        }
        if let Some(Ok(Some(status))) = engine.child.as_mut().map(Child::try_wait) {
            engine.child = None;
            panic!("private dockerd exited ({status}):\n{}", engine.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "private dockerd did not answer within 60 s:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn words(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn reaches_an_engine_over_tls_and_only_with_a_certificate_its_ca_signed() {
    if let Some(why) = unavailable() {
        eprintln!("skipping: {why}");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    // A client certificate of a CA the engine does not trust.
    let stranger = tempfile::tempdir().unwrap();
    certificates(stranger.path());
    std::fs::copy(certs.path().join("ca.pem"), stranger.path().join("ca.pem")).unwrap();
    let engine = start_engine(certs.path()).await;
    let host = format!("tcp://127.0.0.1:{PORT}");
    let import = ["image", "import", "--docker-host", host.as_str()];

    let plain = engine.node_manager(&import, &[]);
    assert!(
        !plain.status.success(),
        "plain HTTP to a --tlsverify engine must fail: {}",
        words(&plain)
    );
    eprintln!("without TLS: {}", words(&plain));
    let one = Path::new("1");
    let forged = engine.node_manager(
        &import,
        &[
            ("DOCKER_TLS_VERIFY", one),
            ("DOCKER_CERT_PATH", stranger.path()),
        ],
    );
    assert!(
        !forged.status.success(),
        "a client certificate the engine's CA did not sign must be refused: {}",
        words(&forged)
    );
    eprintln!("with a stranger's certificate: {}", words(&forged));
    let tls = engine.node_manager(
        &import,
        &[
            ("DOCKER_TLS_VERIFY", one),
            ("DOCKER_CERT_PATH", certs.path()),
        ],
    );
    assert!(
        tls.status.success(),
        "import over TLS failed: {}\nengine log:\n{}",
        words(&tls),
        engine.log()
    );
    assert!(words(&tls).contains("imported"), "{}", words(&tls));
}
