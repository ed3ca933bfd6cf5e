//! Ending an exec whose client went away. The engine has no "kill exec" call, so the agent —
//! which runs on the host as root, in the engine's PID namespace — kills the exec's host
//! process and everything it started.
//!
//! It must never kill anything else: the PID is pinned by its start time (PIDs are reused) and
//! must sit in the container's cgroup, and only that process's descendants are touched. The
//! tree is stopped first (SIGSTOP) so nothing forks between the scan and the kill, then killed.

use std::collections::{BTreeSet, HashMap};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Fields of `/proc/PID/stat` the kill needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent PID.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks after boot: with the PID, identifies one process.
    pub start: u64,
}

/// Parses `/proc/PID/stat`; the command name may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22), numbered from 1.
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// An exec's process on the host, identified once while it is known to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProcess {
    pid: i32,
    start: u64,
}

impl HostProcess {
    /// Pins `pid` if it runs in the container `container_id`; `None` if it does not (ended, or
    /// the engine lives in another PID namespace, where its PIDs mean nothing here).
    pub fn identify(pid: i64, container_id: &str) -> Option<Self> {
        let pid = i32::try_from(pid).ok().filter(|p| *p > 1)?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        if container_id.is_empty() || !cgroup.contains(container_id) {
            return None;
        }
        Some(Self {
            pid,
            start: stat(pid)?.start,
        })
    }

    /// The host PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// Kills the process, its descendants and its process group; returns how many processes
    /// were signalled (0 when it had already ended).
    pub fn kill_tree(&self) -> usize {
        if !self.alive() {
            return 0;
        }
        let mut tree = BTreeSet::from([self.pid]);
        signal(self.pid, Signal::STOP);
        // Stopped processes cannot fork; rescan until the tree stops growing.
        for _ in 0..16 {
            let grown = descendants(&tree, &children_by_parent());
            let new: Vec<i32> = grown.difference(&tree).copied().collect();
            if new.is_empty() {
                break;
            }
            for p in &new {
                signal(*p, Signal::STOP);
            }
            tree.extend(new);
        }
        // The exec runs in its own session (runc calls setsid), so its group is its own.
        if stat(self.pid).is_some_and(|s| s.pgrp == self.pid) {
            if let Some(g) = Pid::from_raw(self.pid) {
                let _ = kill_process_group(g, Signal::KILL);
            }
        }
        for p in &tree {
            signal(*p, Signal::KILL);
        }
        tree.len()
    }
}

fn signal(pid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid) {
        // ESRCH: it ended meanwhile, which is what we want.
        let _ = kill_process(p, sig);
    }
}

/// Parent PID → children, from every process of the host.
fn children_by_parent() -> HashMap<i32, Vec<i32>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(s) = stat(pid) {
            map.entry(s.ppid).or_default().push(pid);
        }
    }
    map
}

/// `roots` and all their descendants in `children`.
pub fn descendants(roots: &BTreeSet<i32>, children: &HashMap<i32, Vec<i32>>) -> BTreeSet<i32> {
    let mut out = roots.clone();
    let mut todo: Vec<i32> = roots.iter().copied().collect();
    while let Some(p) = todo.pop() {
        for c in children.get(&p).into_iter().flatten() {
            if out.insert(*c) {
                todo.push(*c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let s = "2305 (sh -c (x) y) S 2241 2305 2305 0 -1 4194560 992 0 4 0 0 0 0 0 20 0 1 0 \
                 337709 2322432 327 18446744073709551615";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                ppid: 2241,
                pgrp: 2305,
                start: 337709
            })
        );
        assert_eq!(parse_stat("12 (x) S"), None);
    }

    #[test]
    fn descendants_follow_the_whole_tree_and_nothing_else() {
        let children = HashMap::from([(10, vec![11, 12]), (12, vec![13]), (1, vec![10, 20])]);
        let got = descendants(&BTreeSet::from([10]), &children);
        assert_eq!(got, BTreeSet::from([10, 11, 12, 13]));
    }

    #[test]
    fn our_own_process_is_not_in_a_container() {
        assert_eq!(
            HostProcess::identify(i64::from(std::process::id()), "abc"),
            None
        );
        assert_eq!(HostProcess::identify(1, ""), None);
        assert_eq!(HostProcess::identify(-3, "abc"), None);
    }
}
