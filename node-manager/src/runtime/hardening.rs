//! What every backend takes away from a sliver, whatever runs it: one list, so a sliver may do
//! exactly the same on a Docker node and on a Kubernetes node.

/// Capabilities a sliver keeps after dropping ALL: enough for a package manager, a daemon that
/// binds a low port and drops privileges, and killing one's own processes; nothing that
/// touches the host (no NET_ADMIN, SYS_ADMIN, SYS_PTRACE, MKNOD, NET_RAW).
pub const SLIVER_CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "NET_BIND_SERVICE",
    "KILL",
];
