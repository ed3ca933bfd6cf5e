//! A private Docker engine owned by one test: its own `dockerd` on a socket, data root and exec
//! root in a fresh directory, so the test may stop it, SIGKILL it and start it again without
//! touching the machine's shared engine (which other tests use).
//!
//! The private engine runs in a network namespace of its own (`ip netns`), like a node of its
//! own: the bridges it makes, deletes and restores never touch the host's, and a restarted
//! dockerd has been seen to delete the host's `docker0` (the shared engine's default bridge)
//! when run without one. Its unix socket is a file, so node managers in the host namespace
//! reach it as usual; its slivers' published ports are on the namespace's loopback, reached
//! with [`PrivateEngine::http_get`]. It uses the shared engine's storage driver and no
//! iptables rules, and takes its networks from a `10.2xx.0.0/16` pool. Running it needs root and a `dockerd` binary; tests
//! check [`unavailable_reason`] first and skip when it says why not.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;

/// Private engines started by this test process, so two of them get different address pools.
static NEXT_POOL: AtomicU32 = AtomicU32::new(0);

/// How long `dockerd` may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `dockerd` may take to exit after SIGTERM (containers get `--shutdown-timeout 3`).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a private engine cannot run here, or `None` when it can (root and a `dockerd` binary).
pub fn unavailable_reason() -> Option<String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => {
            return Some(format!(
                "a private dockerd needs root, running as uid {uid}"
            ))
        }
        None => return Some("cannot tell the effective uid (no /proc/self/status)".into()),
    }
    if !ip(&["-V"]) {
        return Some("no `ip` command (iproute2) to make the engine's network namespace".into());
    }
    if !Command::new("nsenter")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Some("no `nsenter` (util-linux) to run the engine in its network namespace".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some(
            "no /bin/busybox (busybox-static) to reach slivers inside the engine's namespace"
                .into(),
        );
    }
    if dockerd_path().is_none() {
        return Some("no dockerd binary on PATH, in /usr/sbin or in /usr/bin".into());
    }
    None
}

/// The effective uid of this process, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The `dockerd` binary: the first on PATH, else `/usr/sbin/dockerd` or `/usr/bin/dockerd`.
fn dockerd_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("dockerd"))
        .chain(["/usr/sbin/dockerd", "/usr/bin/dockerd"].map(PathBuf::from))
        .find(|p| p.is_file())
}

/// A `dockerd` of the test's own, in a temporary directory; on drop its containers and networks
/// are removed, the daemon is stopped and the directory deleted (best effort).
pub struct PrivateEngine {
    dir: tempfile::TempDir,
    child: Option<Child>,
    driver: String,
    pool: String,
    /// Its network namespace, made by [`PrivateEngine::start`] and deleted on drop.
    netns: String,
    /// True once the daemon answered a ping: only then is it worth starting again for cleanup.
    started_once: bool,
}

impl PrivateEngine {
    /// Starts a private engine and waits until it answers a ping (panics with the tail of its
    /// log after 60 s). Panics if [`unavailable_reason`] says it cannot run here.
    pub async fn start() -> PrivateEngine {
        if let Some(why) = unavailable_reason() {
            panic!("cannot start a private Docker engine: {why}");
        }
        let driver = shared_storage_driver().await;
        let k = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let octet = 200 + (std::process::id() + k) % 50;
        let pool = format!("base=10.{octet}.0.0/16,size=24");
        let netns = format!("sbe{octet}");
        make_netns(&netns);
        // Short: the socket path must stay under the 108 bytes of a unix socket address.
        let dir = tempfile::Builder::new()
            .prefix("sbe")
            .tempdir_in("/tmp")
            .expect("temporary directory for a private engine");
        std::fs::write(dir.path().join("daemon.json"), "{}\n").expect("write daemon.json");
        let mut engine = PrivateEngine {
            dir,
            child: None,
            driver,
            pool,
            netns,
            started_once: false,
        };
        engine.spawn_and_wait().await;
        engine
    }

    /// `DOCKER_HOST` for this engine: `unix:///tmp/sbe.../docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A client of this engine (120 s request timeout). Panics if its socket does not exist
    /// (bollard checks), which cannot happen once [`start`](Self::start) returned.
    pub fn docker(&self) -> Docker {
        Docker::connect_with_unix(&self.host(), 120, bollard::API_DEFAULT_VERSION)
            .expect("client of the private engine")
    }

    /// SIGTERM: the daemon stops its containers and exits. Waits up to 60 s for it, then panics.
    /// Containers with restart policy `always` or `on-failure` come back on the next start.
    pub async fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        signal(child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) | Err(_) = child.try_wait() {
                break;
            }
            if start.elapsed() > STOP_TIMEOUT {
                panic!(
                    "private dockerd did not exit {STOP_TIMEOUT:?} after SIGTERM; log tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.child = None;
    }

    /// SIGKILL, no cleanup: containers, their shims and their mounts stay as they are. Also
    /// SIGKILLs the containerd that this dockerd ran (it dies within seconds anyway, and a
    /// start that still finds it alive reuses it and fails), and deletes the pid file left
    /// behind, which would make the next start fail.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        let dir = self.dir.path().to_path_buf();
        let _ = tokio::task::spawn_blocking(move || kill_containerd_blocking(&dir)).await;
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Starts the daemon again on the same directory (after [`stop`](Self::stop) or
    /// [`kill9`](Self::kill9)) and waits until it answers a ping.
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again while the private dockerd runs"
        );
        self.spawn_and_wait().await;
    }

    /// `GET /` on a port published by a sliver of this engine (inside its namespace): the
    /// response, or `None` if nothing answered within 2 s.
    pub fn http_get(&self, port: u32) -> Option<String> {
        // busybox's own `wget -T` crashes in Debian's busybox-static: `timeout` bounds it.
        let out = Command::new("timeout")
            .args(["2", "ip", "netns", "exec", &self.netns])
            .args(["/bin/busybox", "wget", "-q", "-O", "-"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// SIGSTOP: the daemon hangs. Its socket still accepts connections, but nothing answers
    /// (a deadlocked engine). Its containers keep running.
    pub fn freeze(&self) {
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), "STOP");
        }
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), "CONT");
        }
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// The daemon's log (stdout and stderr of every start) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("docker.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }

    /// The last 60 lines of the log, for panic messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Spawns `dockerd` on the directory, its output appended to `dockerd.log`.
    fn spawn(&mut self) -> std::io::Result<()> {
        let d = self.dir.path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())?;
        let _ = writeln!(log, "=== slicebed test harness: starting dockerd ===");
        let dockerd = dockerd_path().unwrap_or_else(|| "dockerd".into());
        // `nsenter` enters only the network namespace (`ip netns exec` would also remount
        // /sys, hiding the cgroup mounts dockerd needs) and execs dockerd: the child's pid is
        // dockerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(dockerd)
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(self.host())
            .arg("--pidfile")
            .arg(self.pid_file())
            .args(["--iptables=false", "--ip-masq=false"])
            .args(["--storage-driver", &self.driver])
            .args(["--default-address-pool", &self.pool])
            .args(["--mtu", "1400", "--shutdown-timeout", "3"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Spawns `dockerd` and waits until it answers a ping; panics with the log tail otherwise.
    async fn spawn_and_wait(&mut self) {
        if let Err(e) = self.spawn() {
            panic!("spawn private dockerd: {e}");
        }
        // bollard refuses to make a client before the socket exists.
        let mut docker = None;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.as_mut().map_or(Ok(None), Child::try_wait) {
                self.child = None;
                panic!(
                    "private dockerd exited ({status}) before answering a ping; log tail:\n{}",
                    self.log_tail()
                );
            }
            if docker.is_none() && self.socket().exists() {
                docker = Some(self.docker());
            }
            if let Some(d) = &docker {
                let ping = tokio::time::timeout(Duration::from_secs(5), d.ping()).await;
                if let Ok(Ok(_)) = ping {
                    break;
                }
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "private dockerd did not answer a ping within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.started_once = true;
    }

    /// Blocking: whether the daemon answers `GET /_ping` on its socket.
    fn ping_blocking(&self) -> bool {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
    }

    /// Blocking: whether the child still runs.
    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Blocking and best effort: makes sure the daemon runs (starting it again after a stop or
    /// a SIGKILL), so that containers and networks can be removed through it.
    fn ensure_running_blocking(&mut self) -> bool {
        if self.running() {
            return self.ping_blocking();
        }
        if !self.started_once {
            return false;
        }
        self.child = None;
        kill_containerd_blocking(self.dir.path());
        let _ = std::fs::remove_file(self.pid_file());
        if self.spawn().is_err() {
            return false;
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if !self.running() {
                return false;
            }
            if self.ping_blocking() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Blocking and best effort: removes every container and unused network through the CLI.
    fn remove_everything_blocking(&self) {
        let host = self.host();
        let ids = Command::new("docker")
            .args(["-H", &host, "ps", "-aq"])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = ids {
            let ids = String::from_utf8_lossy(&out.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["-H", &host, "rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("docker")
            .args(["-H", &host, "network", "prune", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Blocking: SIGTERM, up to 30 s for the daemon to exit, then SIGKILL.
    fn stop_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), "TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The storage driver of the shared engine (`DOCKER_HOST` or the local socket), else `overlay2`.
async fn shared_storage_driver() -> String {
    let info = async {
        Docker::connect_with_local_defaults()
            .ok()?
            .info()
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(10), info)
        .await
        .ok()
        .flatten()
        .and_then(|i| i.driver)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "overlay2".into())
}

/// Sends `SIGsig` to `pid` through `kill(1)`.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Blocking: SIGKILLs the containerd that the (dead) dockerd on `dir` ran, if it is still
/// alive, waits up to 10 s until it is dead, and deletes its pid file: the next dockerd then
/// starts a fresh containerd (the containers' shims outlive both). The killed containerd stays
/// a zombie until this machine's init gets round to reaping it, and a dockerd that found its
/// pid file would take the zombie for a running containerd and wait for it in vain.
fn kill_containerd_blocking(dir: &Path) {
    let pid_file = dir.join("exec/containerd/containerd.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    // The pid file outlives the process: make sure the pid is still that containerd.
    if let Some(pid) = pid.filter(|pid| processes_under(dir).contains(pid)) {
        signal(pid, "KILL");
        let start = Instant::now();
        while alive(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Mount points at or under `dir`, deepest first (from `/proc/self/mountinfo`); a path mounted
/// several times over appears as often.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts
}

/// Pids of processes whose command line mentions `dir` (the daemon's containerd and shims).
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_bytes();
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.ensure_running_blocking() {
            self.remove_everything_blocking();
        }
        self.stop_blocking();
        let dir = self.dir.path().to_path_buf();
        for pid in processes_under(&dir) {
            signal(pid, "KILL");
        }
        for m in mounts_under(&dir) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&m)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        ip(&["netns", "del", &self.netns]);
        // The TempDir removes the directory when the fields drop, ignoring errors.
    }
}

/// Runs `ip ARGS`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh network namespace `name` with its loopback up (one left by an aborted run is
/// replaced).
fn make_netns(name: &str) {
    ip(&["netns", "del", name]);
    assert!(
        ip(&["netns", "add", name])
            && ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]),
        "cannot make network namespace {name} with `ip netns`"
    );
}
