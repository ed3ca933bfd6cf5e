//! The processes of a local testbed: starting them detached (own process group, output to a log
//! file), recording them in `pids.json`, telling whether they still live, and stopping them.
//!
//! A recorded pid is only trusted while `/proc/PID/cmdline` still names the binary we started, so a
//! recycled pid never gets a signal meant for a testbed process.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use rustix::process::{kill_process, kill_process_group, test_kill_process, Pid, Signal};
use serde::{Deserialize, Serialize};

/// One started process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proc {
    /// "slice-service" or "node-<site>".
    pub name: String,
    /// File name of its executable, checked against /proc before signalling.
    pub binary: String,
    pub pid: i32,
    /// Its log file.
    pub log: PathBuf,
}

/// `DIR/pids.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// URL of the service, once known.
    pub server: Option<String>,
    /// Sites whose nodes were enrolled (their state dirs are `DIR/nodes/<site>`).
    pub sites: Vec<String>,
    pub processes: Vec<Proc>,
}

impl Pids {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("pids.json")
    }

    /// Reads the record; None if there is none.
    pub fn load(dir: &Path) -> Result<Option<Pids>> {
        let path = Self::path(dir);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("invalid {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the record (after every start, so an interrupted `dev up` can still be stopped).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(".pids.json.tmp");
        fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .and_then(|_| fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The recorded processes that still run.
    pub fn alive(&self) -> Vec<&Proc> {
        self.processes.iter().filter(|p| is_alive(p)).collect()
    }
}

/// Starts `bin args...` in its own process group with stdout and stderr appended to `log`.
/// It outlives slicectl: nothing kills it when the returned handle is dropped.
pub fn spawn_detached(
    name: &str,
    bin: &Path,
    args: &[String],
    log: &Path,
) -> Result<(Proc, Child)> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let binary = bin
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let proc = Proc {
        name: name.into(),
        binary,
        pid: child.id() as i32,
        log: log.into(),
    };
    Ok((proc, child))
}

/// Whether the process runs and is still the one we started.
pub fn is_alive(p: &Proc) -> bool {
    let Some(pid) = Pid::from_raw(p.pid) else {
        return false;
    };
    if test_kill_process(pid).is_err() {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{}", p.pid));
    if !Path::new("/proc/self").exists() {
        return true; // No procfs: trust the pid.
    }
    let zombie = fs::read_to_string(proc_dir.join("stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    !zombie && String::from_utf8_lossy(&cmdline).contains(&p.binary)
}

/// SIGTERM to each live process group, then SIGKILL to whatever still runs after `grace`.
/// Returns the names of the processes that had to be killed.
pub fn stop_all(procs: &[Proc], grace: Duration) -> Vec<String> {
    let live: Vec<&Proc> = procs.iter().filter(|p| is_alive(p)).collect();
    for p in &live {
        signal(p, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && live.iter().any(|p| is_alive(p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed = Vec::new();
    for p in live.iter().filter(|p| is_alive(p)) {
        signal(p, Signal::KILL);
        killed.push(p.name.clone());
    }
    killed
}

fn signal(p: &Proc, sig: Signal) {
    if let Some(pid) = Pid::from_raw(p.pid) {
        // The group is the process itself (process_group(0)); fall back to the lone pid.
        if kill_process_group(pid, sig).is_err() {
            let _ = kill_process(pid, sig);
        }
    }
}

/// The last `n` lines of a log file, for error reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_records_and_stops_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let (proc, _child) = spawn_detached(
            "sleeper",
            Path::new("/bin/sleep"),
            &["30".into()],
            &dir.path().join("s.log"),
        )
        .unwrap();
        // Between fork and exec, /proc/PID/cmdline still shows the parent: wait for the exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_alive(&proc) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_alive(&proc));
        let pids = Pids {
            server: None,
            sites: vec![],
            processes: vec![proc.clone()],
        };
        pids.save(dir.path()).unwrap();
        assert_eq!(Pids::load(dir.path()).unwrap(), Some(pids));
        // A pid that now belongs to another program is not ours.
        assert!(!is_alive(&Proc {
            binary: "no-such-binary".into(),
            ..proc.clone()
        }));
        assert!(stop_all(std::slice::from_ref(&proc), Duration::from_secs(5)).is_empty());
        // Our own unreaped child is a zombie now, which counts as gone.
        assert!(!is_alive(&proc));
    }
}
