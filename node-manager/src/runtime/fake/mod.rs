//! A scripted in-memory [`Runtime`] for reconciler tests (and, later, a scale simulator).
//! Behaviour is set per image, like Nomad's mock driver: start normally, fail to start,
//! exit with a code, or be OOM-killed. It never replaces tests against the real engine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::StreamExt;

use super::{Result, Runtime, RuntimeChange, RuntimeError};
use crate::domain::{ContainerPhase, ObservedSliver, SliverSpec};

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

#[derive(Default)]
struct State {
    containers: BTreeMap<String, ObservedSliver>,
    networks: BTreeSet<String>,
    images: HashMap<String, Behaviour>,
    next_id: u64,
    calls: Vec<String>,
    /// The engine does not answer: every operation fails as unavailable.
    down: bool,
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        self.lock().containers.values().cloned().collect()
    }

    /// Current networks (slice names).
    pub fn networks(&self) -> Vec<String> {
        self.lock().networks.iter().cloned().collect()
    }

    /// Adds a container directly, as if left over from an earlier run.
    pub fn insert(&self, c: ObservedSliver) {
        self.lock().containers.insert(c.container_id.clone(), c);
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

fn apply(c: &mut ObservedSliver, b: &Behaviour) {
    match b {
        Behaviour::Run | Behaviour::FailStart(_) => c.phase = ContainerPhase::Running,
        Behaviour::Exit(code) => {
            c.phase = ContainerPhase::Exited;
            c.exit_code = Some(*code);
        }
        Behaviour::OomKilled => {
            c.phase = ContainerPhase::Exited;
            c.exit_code = Some(137);
            c.oom_killed = true;
        }
    }
}

impl Runtime for FakeRuntime {
    fn node(&self) -> &str {
        &self.node
    }

    async fn ensure_network(&self, slice: &str) -> Result<()> {
        let mut s = self.answer("ensure_network")?;
        if s.networks.insert(slice.to_string()) {
            s.calls.push(format!("network+ {slice}"));
        }
        Ok(())
    }

    async fn remove_network(&self, slice: &str) -> Result<()> {
        let mut s = self.answer("remove_network")?;
        s.networks.remove(slice);
        s.calls.push(format!("network- {slice}"));
        Ok(())
    }

    async fn list_networks(&self) -> Result<Vec<String>> {
        drop(self.answer("list_networks")?);
        Ok(self.networks())
    }

    async fn create_and_start(&self, spec: &SliverSpec) -> Result<String> {
        let mut s = self.answer("create_and_start")?;
        s.calls.push(format!("create {}", spec.sliver_id));
        let Some(b) = s.images.get(&spec.image).cloned() else {
            return Err(RuntimeError::ImageMissing {
                image: spec.image.clone(),
            });
        };
        if !s.networks.contains(&spec.slice) {
            return Err(RuntimeError::Engine {
                op: format!("create container {}", spec.sliver_id),
                message: format!("network {} not found", spec.slice),
            });
        }
        if s.containers.values().any(|c| c.sliver_id == spec.sliver_id) {
            return Err(RuntimeError::Engine {
                op: format!("create container {}", spec.sliver_id),
                message: "Conflict. The container name is already in use".into(),
            });
        }
        if let Behaviour::FailStart(message) = &b {
            return Err(RuntimeError::Engine {
                op: "start container".into(),
                message: message.clone(),
            });
        }
        s.next_id += 1;
        let id = format!("c{}", s.next_id);
        let mut c = ObservedSliver {
            container_id: id.clone(),
            sliver_id: spec.sliver_id.clone(),
            slice: spec.slice.clone(),
            generation: spec.generation,
            phase: ContainerPhase::Created,
            exit_code: None,
            oom_killed: false,
            restarts: 0,
            limits: spec.resources,
            error: None,
        };
        apply(&mut c, &b);
        s.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("start")?;
        s.calls.push(format!("start {container_id}"));
        if let Some(c) = s.containers.get_mut(container_id) {
            c.phase = ContainerPhase::Running;
        }
        Ok(())
    }

    async fn pause(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("pause")?;
        s.calls.push(format!("pause {container_id}"));
        if let Some(c) = s.containers.get_mut(container_id) {
            if matches!(c.phase, ContainerPhase::Running | ContainerPhase::Paused) {
                c.phase = ContainerPhase::Paused;
            } else {
                return Err(RuntimeError::Engine {
                    op: format!("pause container {container_id}"),
                    message: "container is not running".into(),
                });
            }
        }
        Ok(())
    }

    async fn unpause(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("unpause")?;
        s.calls.push(format!("unpause {container_id}"));
        if let Some(c) = s.containers.get_mut(container_id) {
            if c.phase == ContainerPhase::Paused {
                c.phase = ContainerPhase::Running;
            }
        }
        Ok(())
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("remove")?;
        s.calls.push(format!("remove {container_id}"));
        s.containers.remove(container_id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        drop(self.answer("list")?);
        Ok(self.containers())
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        Ok(self.answer("inspect")?.containers.get(container).cloned())
    }

    async fn ping(&self) -> Result<()> {
        drop(self.answer("ping")?);
        Ok(())
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        futures::stream::pending().boxed()
    }
}
