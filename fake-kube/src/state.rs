//! What the server, the simulated kubelet and the test hooks share, and the fake's timings.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::kubelet::sim::Sim;
use crate::store::Store;

/// How fast the simulated cluster moves. The defaults keep tests to a few seconds.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often the kubelet and namespace controller look at the store.
    pub tick: Duration,
    /// Each container step: pulling/creating, and how long a scripted failure runs before it fails.
    pub step: Duration,
    /// How long a deleted Pod's containers take to stop (bounded by its grace period).
    pub termination: Duration,
    /// CrashLoopBackOff delay before a restart.
    pub crash_backoff: Duration,
    /// Interval between the lines a running simulated container logs.
    pub log_interval: Duration,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            tick: Duration::from_millis(50),
            step: Duration::from_millis(300),
            termination: Duration::from_millis(300),
            crash_backoff: Duration::from_millis(500),
            log_interval: Duration::from_millis(500),
            bookmark_interval: Duration::from_secs(2),
        }
    }
}

pub struct Shared {
    pub store: Mutex<Store>,
    /// Lock order: `store` before `sim`, always.
    pub sim: Mutex<Sim>,
    pub token: String,
    pub timings: Timings,
    /// Bumped to end every open watch (the `expire_watches` hook, shutdown).
    pub closing: watch::Sender<u64>,
    /// Wakes log followers when any simulated container writes a line.
    pub log_written: broadcast::Sender<()>,
    /// Test-set behaviours, by (namespace, pod name), overriding the annotation.
    pub behaviours: Mutex<HashMap<(String, String), crate::Behaviour>>,
    /// Containers behind exec, when the fake was started with `docker_exec`.
    pub docker: Option<std::sync::Arc<crate::exec::docker::Docker>>,
}
