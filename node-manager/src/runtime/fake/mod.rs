//! A scripted in-memory [`Runtime`] implementing the whole trait, for unit tests of the
//! reconciler and of the access relays (and, later, a scale simulator). Behaviour is set per
//! image, like Nomad's mock driver: start normally, fail to start, exit with a code, or be
//! OOM-killed; exec, logs and copy are scripted in [`access`]; capabilities can be narrowed to
//! play a lesser backend. It is the model for a new backend, and it never replaces tests
//! against the real engine.

mod access;
mod backend;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

pub use access::{Entry, ExecBehaviour};

use super::{Capabilities, Output, Result, RuntimeError};
use crate::domain::ObservedSliver;

/// A fake container's cumulative counters, as [`FakeRuntime::set_counters`] plays them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// CPU time since start, nanoseconds.
    pub cpu_nanos: u64,
    /// Working set, bytes.
    pub memory_bytes: i64,
    /// Bytes received since start.
    pub rx: u64,
    /// Bytes sent since start.
    pub tx: u64,
    /// When the container started, if the fake should say.
    pub started_at: Option<std::time::SystemTime>,
    /// When the engine read these counters, if the fake should say.
    pub read_at: Option<std::time::SystemTime>,
}

/// What a container of a given image does when started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until removed.
    Run,
    /// The engine refuses to start it with this message.
    FailStart(String),
    /// Its program exits at once with this code.
    Exit(i64),
    /// The OOM killer ends it (exit code 137).
    OomKilled,
}

struct State {
    containers: BTreeMap<String, ObservedSliver>,
    networks: BTreeSet<String>,
    images: HashMap<String, Behaviour>,
    next_id: u64,
    calls: Vec<String>,
    /// The engine does not answer: every operation fails as unavailable.
    down: bool,
    capabilities: Capabilities,
    /// Bytes written per container id (what `disk_usage` reports).
    written: HashMap<String, i64>,
    /// Counters per sliver id (what `stats` reports for its running container).
    counters: HashMap<String, Counters>,
    exec_scripts: HashMap<String, ExecBehaviour>,
    execs: BTreeMap<String, access::FakeExec>,
    /// Log lines per sliver id.
    logs: HashMap<String, Vec<Output>>,
    /// File tree per container id.
    files: HashMap<String, BTreeMap<String, Entry>>,
    /// Tar streams received: (container, directory, bytes).
    uploads: Vec<(String, String, Bytes)>,
    /// The node each container belongs to (the Docker backend's node label).
    owners: HashMap<String, String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            containers: BTreeMap::new(),
            networks: BTreeSet::new(),
            images: HashMap::new(),
            next_id: 0,
            calls: Vec::new(),
            down: false,
            capabilities: Capabilities::ALL,
            written: HashMap::new(),
            counters: HashMap::new(),
            exec_scripts: HashMap::new(),
            execs: BTreeMap::new(),
            logs: HashMap::new(),
            files: HashMap::new(),
            uploads: Vec::new(),
            owners: HashMap::new(),
        }
    }
}

/// The fake runtime; clones share state, like two agents on one engine.
#[derive(Clone)]
pub struct FakeRuntime {
    node: String,
    state: Arc<Mutex<State>>,
}

impl FakeRuntime {
    /// An empty engine for `node` with no images.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            state: Arc::default(),
        }
    }

    /// Makes `image` present with the given behaviour.
    pub fn with_image(self, image: &str, behaviour: Behaviour) -> Self {
        self.lock().images.insert(image.to_string(), behaviour);
        self
    }

    /// Another node's runtime on the same engine (shared state, its own containers).
    pub fn on_node(&self, node: &str) -> Self {
        Self {
            node: node.to_string(),
            state: self.state.clone(),
        }
    }

    /// This node's containers of `s`.
    fn mine<'a>(&'a self, s: &'a State) -> impl Iterator<Item = &'a ObservedSliver> + 'a {
        s.containers
            .values()
            .filter(|c| s.owners.get(&c.container_id) == Some(&self.node))
    }

    /// Plays a backend that can do only `c`.
    pub fn with_capabilities(self, c: Capabilities) -> Self {
        self.lock().capabilities = c;
        self
    }

    /// What an exec of `program` (the command's first word) does; others are not found.
    pub fn with_exec(self, program: &str, b: ExecBehaviour) -> Self {
        self.lock().exec_scripts.insert(program.to_string(), b);
        self
    }

    /// Plays sliver `sliver_id`'s container having written `bytes` to its file system.
    pub fn set_written(&self, sliver_id: &str, bytes: i64) {
        let mut s = self.lock();
        let ids: Vec<String> = self
            .mine(&s)
            .filter(|c| c.sliver_id == sliver_id)
            .map(|c| c.container_id.clone())
            .collect();
        for id in ids {
            s.written.insert(id, bytes);
        }
    }

    /// Plays sliver `sliver_id`'s counters (CPU nanoseconds, working set, bytes received
    /// and sent since start), reported by `stats` while its container runs.
    pub fn set_counters(&self, sliver_id: &str, c: Counters) {
        self.lock().counters.insert(sliver_id.to_string(), c);
    }

    /// Sets the log of sliver `sliver_id`, one chunk per line.
    pub fn set_log(&self, sliver_id: &str, lines: Vec<Output>) {
        self.lock().logs.insert(sliver_id.to_string(), lines);
    }

    /// Puts a file or directory into a container's tree.
    pub fn put(&self, container_id: &str, path: &str, entry: Entry) {
        let mut s = self.lock();
        s.files
            .entry(container_id.to_string())
            .or_default()
            .insert(path.to_string(), entry);
    }

    /// Tar streams received so far: (container, directory, bytes).
    pub fn uploads(&self) -> Vec<(String, String, Bytes)> {
        self.lock().uploads.clone()
    }

    /// Commands of the execs that were killed.
    pub fn killed_execs(&self) -> Vec<Vec<String>> {
        self.lock()
            .execs
            .values()
            .filter(|e| e.killed.load(std::sync::atomic::Ordering::SeqCst))
            .map(|e| e.command.clone())
            .collect()
    }

    /// Containers the execs ran in, in order.
    pub fn exec_containers(&self) -> Vec<String> {
        self.lock()
            .execs
            .values()
            .map(|e| e.container.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether image `reference` is present.
    pub fn has_image(&self, reference: &str) -> bool {
        self.lock().images.contains_key(reference)
    }

    /// Operations performed so far, e.g. `create s1`, `remove c1`, `network+ web`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Current containers.
    pub fn containers(&self) -> Vec<ObservedSliver> {
        let s = self.lock();
        self.mine(&s).cloned().collect()
    }

    /// Current networks (slice names).
    pub fn networks(&self) -> Vec<String> {
        self.lock().networks.iter().cloned().collect()
    }

    /// Adds a container directly, as if left over from an earlier run.
    pub fn insert(&self, c: ObservedSliver) {
        let mut s = self.lock();
        s.files
            .entry(c.container_id.clone())
            .or_insert_with(|| access::initial_tree(&c.sliver_id));
        s.owners.insert(c.container_id.clone(), self.node.clone());
        s.containers.insert(c.container_id.clone(), c);
    }

    fn unable(&self, what: &str) -> RuntimeError {
        RuntimeError::Engine {
            op: what.to_string(),
            message: "this backend cannot do that".into(),
        }
    }

    /// Stops (`true`) or restarts (`false`) answering, like an engine being restarted.
    /// Containers are left as they are; change them with [`FakeRuntime::update`].
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn answer(&self, op: &str) -> Result<MutexGuard<'_, State>> {
        let s = self.lock();
        if s.down {
            return Err(RuntimeError::Unavailable {
                op: op.to_string(),
                message: "connection refused".into(),
            });
        }
        Ok(s)
    }

    /// Changes a container in place (simulates the program exiting, a restart, ...).
    pub fn update(&self, container_id: &str, f: impl FnOnce(&mut ObservedSliver)) {
        if let Some(c) = self.lock().containers.get_mut(container_id) {
            f(c);
        }
    }
}
