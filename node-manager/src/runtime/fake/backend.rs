//! The fake backend's [`Runtime`] implementation: containers follow their image's scripted
//! [`Behaviour`], networks and images are sets, exec/logs/copy delegate to [`super::access`].
//! Like a real backend it only ever shows its own node's containers.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{access, Behaviour, FakeRuntime};
use crate::domain::{ContainerPhase, ObservedSliver, SliverSpec};
use crate::runtime::{
    Capabilities, ContainerStats, DiskUse, ExecProcess, ExecSpec, ImageImport, LogsSpec, Output,
    Result, Runtime, RuntimeChange, RuntimeError, TermSize,
};

fn apply(c: &mut ObservedSliver, b: &Behaviour) {
    match b {
        Behaviour::Run | Behaviour::FailStart(_) => c.phase = ContainerPhase::Running,
        Behaviour::Exit(code) => {
            c.phase = ContainerPhase::EXITED;
            c.exit_code = Some(*code);
        }
        Behaviour::OomKilled => {
            c.phase = ContainerPhase::EXITED;
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
        if !s.capabilities.slice_networks {
            return Err(self.unable("create a slice network"));
        }
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
        if s.capabilities.slice_networks && !s.networks.contains(&spec.slice) {
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
            ends_at: None,
        };
        apply(&mut c, &b);
        s.files
            .insert(id.clone(), access::initial_tree(&spec.sliver_id));
        s.owners.insert(id.clone(), self.node.clone());
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
        if !s.capabilities.pause {
            return Err(self.unable("pause a container"));
        }
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

    async fn stop(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("stop")?;
        s.calls.push(format!("stop {container_id}"));
        if let Some(c) = s.containers.get_mut(container_id) {
            if c.phase == ContainerPhase::Running {
                c.phase = ContainerPhase::EXITED;
                c.exit_code = Some(137);
            }
        }
        Ok(())
    }

    async fn disk_usage(&self) -> Result<Vec<DiskUse>> {
        let s = self.answer("disk_usage")?;
        Ok(self
            .mine(&s)
            .filter_map(|c| {
                Some(DiskUse {
                    container_id: c.container_id.clone(),
                    bytes: *s.written.get(&c.container_id)?,
                })
            })
            .collect())
    }

    async fn stats(&self) -> Result<Vec<ContainerStats>> {
        let s = self.answer("stats")?;
        Ok(self
            .mine(&s)
            .filter(|c| c.phase == ContainerPhase::Running)
            .map(|c| {
                let k = s.counters.get(&c.sliver_id).copied().unwrap_or_default();
                ContainerStats {
                    container_id: c.container_id.clone(),
                    sliver_id: c.sliver_id.clone(),
                    cpu_nanos: k.cpu_nanos,
                    memory_bytes: k.memory_bytes,
                    net_rx_bytes: k.rx,
                    net_tx_bytes: k.tx,
                    started_at: k.started_at,
                    read_at: k.read_at,
                }
            })
            .collect())
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        let mut s = self.answer("remove")?;
        s.calls.push(format!("remove {container_id}"));
        s.containers.remove(container_id);
        s.files.remove(container_id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        drop(self.answer("list")?);
        Ok(self.containers())
    }

    async fn find_sliver(&self, sliver_id: &str) -> Result<Option<ObservedSliver>> {
        let s = self.answer("find_sliver")?;
        let found = self.mine(&s).find(|c| c.sliver_id == sliver_id).cloned();
        Ok(found)
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        let s = self.answer("inspect")?;
        let found = self.mine(&s).find(|c| c.container_id == container).cloned();
        Ok(found)
    }

    async fn ping(&self) -> Result<()> {
        drop(self.answer("ping")?);
        Ok(())
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        futures::stream::pending().boxed()
    }

    fn capabilities(&self) -> Capabilities {
        self.lock().capabilities
    }

    async fn exec(&self, container_id: &str, spec: ExecSpec) -> Result<ExecProcess> {
        self.start_exec(container_id, spec)
    }

    async fn resize_exec(&self, exec_id: &str, size: TermSize) -> Result<()> {
        let mut s = self.answer("resize_exec")?;
        s.calls
            .push(format!("resize {exec_id} {}x{}", size.rows, size.cols));
        Ok(())
    }

    async fn wait_exec(&self, exec_id: &str) -> Result<Option<i64>> {
        self.wait_exit(exec_id).await
    }

    fn logs(&self, container_id: &str, spec: LogsSpec) -> BoxStream<'static, Result<Output>> {
        self.log_stream(container_id, spec)
    }

    async fn copy_in(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        self.upload(container_id, dir, tar).await
    }

    fn copy_out(&self, container_id: &str, path: &str) -> BoxStream<'static, Result<Bytes>> {
        self.download(container_id, path)
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        let s = self.answer("image_id")?;
        Ok(s.images
            .contains_key(reference)
            .then(|| format!("sha256:{reference}")))
    }

    async fn import_image(&self, image: ImageImport) -> Result<()> {
        let mut s = self.answer("import_image")?;
        s.calls.push(format!("import {}", image.reference));
        s.images.insert(image.reference, Behaviour::Run);
        Ok(())
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        let mut s = self.answer("remove_image")?;
        s.calls.push(format!("image- {id}"));
        let reference = id.strip_prefix("sha256:").unwrap_or(id).to_string();
        s.images.remove(&reference);
        Ok(())
    }

    async fn load_image(
        &self,
        reference: &str,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<()> {
        use futures::TryStreamExt;
        let bytes: usize = archive
            .try_fold(0, |n, b| async move { Ok(n + b.len()) })
            .await
            .map_err(|e| RuntimeError::Engine {
                op: format!("load image {reference}"),
                message: e.to_string(),
            })?;
        let mut s = self.answer("load_image")?;
        s.calls.push(format!("load {reference} {bytes}"));
        s.images.insert(reference.to_string(), Behaviour::Run);
        Ok(())
    }
}
