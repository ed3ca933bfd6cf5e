//! Default capacity of this machine, offered when `enroll` is not told otherwise:
//! cores from the scheduler's view, memory from /proc/meminfo, disk from statvfs of the
//! engine's data root (or `/`).

use std::path::Path;

use crate::domain::Resources;

/// Millicores the process may use (respects affinity and cgroup quotas).
pub fn cpu_millis() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64) * 1000
}

/// `MemTotal` in bytes from a /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Total memory in bytes, 0 if unknown.
pub fn memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_meminfo)
        .unwrap_or(0)
}

/// Size in bytes of the file system holding `path`, 0 if unknown.
pub fn disk_bytes(path: &Path) -> i64 {
    rustix::fs::statvfs(path).map_or(0, |s| (s.f_blocks.saturating_mul(s.f_frsize)) as i64)
}

/// The machine's capacity, disk measured at `disk_root` (the engine's data root) or `/`.
pub fn capacity(disk_root: Option<&Path>) -> Resources {
    let disk = disk_root
        .map(disk_bytes)
        .filter(|d| *d > 0)
        .unwrap_or_else(|| disk_bytes(Path::new("/")));
    Resources {
        cpu_millis: cpu_millis(),
        memory_bytes: memory_bytes(),
        disk_bytes: disk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let t = "MemTotal:        8024516 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo(t), Some(8024516 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn this_host_has_something() {
        let c = capacity(None);
        assert!(
            c.cpu_millis >= 1000 && c.memory_bytes > 0 && c.disk_bytes > 0,
            "{c:?}"
        );
    }
}
