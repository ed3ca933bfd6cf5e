//! The service's CPU time and resident memory, read from /proc.

use std::time::{Duration, Instant};

/// CPU time (user + system) of process `pid` so far, or None if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields 14 and 15 (utime, stime) follow
    // the closing parenthesis as the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|hz| *hz > 0)
            .unwrap_or(100)
    })
}

/// Resident memory (VmRSS) of process `pid` in MiB, or None if it is gone.
pub fn rss_mib(pid: u32) -> Option<f64> {
    rss_of(&format!("/proc/{pid}/status"))
}

/// Resident memory of this process (the load generator) in MiB.
pub fn own_rss_mib() -> f64 {
    rss_of("/proc/self/status").unwrap_or(0.0)
}

fn rss_of(path: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU used by one process over a span of wall time.
pub struct CpuSpan {
    pid: u32,
    cpu: Duration,
    wall: Instant,
}

/// What a span measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuUse {
    /// Percent of one core.
    pub fn percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Milliseconds of CPU per operation.
    pub fn ms_per(&self, ops: u64) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / ops.max(1) as f64
    }
}

impl CpuSpan {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            cpu: cpu_time(pid).unwrap_or_default(),
            wall: Instant::now(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        CpuUse {
            cpu: cpu_time(self.pid)
                .unwrap_or_default()
                .saturating_sub(self.cpu),
            wall: self.wall.elapsed(),
        }
    }
}

/// This process's (soft, hard) limit on open files, from /proc/self/limits.
fn nofile() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let soft = f.next()?.parse().ok()?;
    let hard = f.next()?.parse().ok()?;
    Some((soft, hard))
}

/// Raises the soft limit on open files to the hard limit (children inherit it) with
/// `prlimit(1)` (the workspace allows no unsafe code for the system call); returns the soft
/// limit in force.
pub fn raise_nofile() -> u64 {
    let Some((soft, hard)) = nofile() else {
        return 0;
    };
    if soft < hard {
        let _ = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    nofile().map_or(soft, |l| l.0)
}
