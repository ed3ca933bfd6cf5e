//! Sliver containers on the engine: create and start, start, pause, unpause, remove, list,
//! inspect, find by sliver, and the change feed. Every container carries the node's labels and
//! every list is filtered by them; a container of another node is never touched.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::connect::{engine, is_already_state, is_not_found};
use super::container_config::container_config;
use super::disk::is_storage_opt_refusal;
use super::observe::observe;
use super::DockerRuntime;
use crate::domain::{ObservedSliver, SliverSpec};
use crate::runtime::{labels, Result, Runtime, RuntimeChange, RuntimeError};

impl DockerRuntime {
    pub(super) async fn create_and_start_container(&self, spec: &SliverSpec) -> Result<String> {
        if self.image_id(&spec.image).await?.is_none() {
            return Err(RuntimeError::ImageMissing {
                image: spec.image.clone(),
            });
        }
        // No sliver joins a network without its firewall rules.
        self.isolate_slice(&spec.slice).await?;
        let name = labels::container_name(&self.node, &spec.sliver_id);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let cap_disk = spec.resources.disk_bytes > 0 && self.storage_opt_supported().await;
        let config = |cap| container_config(&self.node, spec, self.publish_ip, cap);
        let created = match self
            .docker
            .create_container(Some(opts.clone()), config(cap_disk))
            .await
        {
            Err(e) if cap_disk && is_storage_opt_refusal(&e) => {
                self.storage_opt_refused(&e);
                self.docker
                    .create_container(Some(opts), config(false))
                    .await
            }
            r => r,
        }
        .map_err(|e| engine(format!("create container {name}"), e))?;
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // Leave nothing half-made: a created-but-unstartable container would only be
            // retried into the same error (a taken host port, a bad command).
            let _ = self.remove_container(&created.id).await;
            return Err(engine(format!("start container {name}"), e));
        }
        Ok(created.id)
    }

    pub(super) async fn start_container(&self, container_id: &str) -> Result<()> {
        self.docker
            .start_container(container_id, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine(format!("start container {container_id}"), e))
    }

    pub(super) async fn pause_container(&self, container_id: &str) -> Result<()> {
        match self.docker.pause_container(container_id).await {
            Ok(()) => Ok(()),
            // "is already paused".
            Err(e) if is_already_state(&e, "already paused") => Ok(()),
            Err(e) => Err(engine(format!("pause container {container_id}"), e)),
        }
    }

    pub(super) async fn unpause_container(&self, container_id: &str) -> Result<()> {
        match self.docker.unpause_container(container_id).await {
            Ok(()) => Ok(()),
            Err(e) if is_already_state(&e, "is not paused") => Ok(()),
            Err(e) => Err(engine(format!("unpause container {container_id}"), e)),
        }
    }

    pub(super) async fn remove_container(&self, container_id: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(container_id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress": someone else (the engine) is removing it.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(format!("remove container {container_id}"), e)),
        }
    }

    /// Ids of this node's containers matching `extra` label filters as well.
    async fn container_ids(&self, extra: &[String]) -> Result<Vec<String>> {
        let mut filters = self.node_filters();
        filters
            .entry("label".to_string())
            .or_default()
            .extend_from_slice(extra);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine("list containers", e))?;
        Ok(summaries.into_iter().filter_map(|s| s.id).collect())
    }

    pub(super) async fn list_containers(&self) -> Result<Vec<ObservedSliver>> {
        self.ensure_negotiated().await?;
        let mut out = Vec::new();
        // The summary lacks exit codes and OOM flags; inspect each (a node runs few slivers).
        for id in self.container_ids(&[]).await? {
            if let Some(o) = self.inspect_container(&id).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    pub(super) async fn find_sliver_container(
        &self,
        sliver_id: &str,
    ) -> Result<Option<ObservedSliver>> {
        let ids = self
            .container_ids(&[format!("{}={sliver_id}", labels::SLIVER)])
            .await?;
        for id in ids {
            if let Some(o) = self.inspect_container(&id).await? {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    pub(super) async fn inspect_container(
        &self,
        container: &str,
    ) -> Result<Option<ObservedSliver>> {
        match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(observe(&self.node, c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(format!("inspect container {container}"), e)),
        }
    }

    pub(super) fn container_changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![labels::node_filter(&self.node)]),
            (
                "event".to_string(),
                ["start", "die", "oom", "destroy", "pause", "unpause"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .map(|r| {
                r.map(|ev| RuntimeChange {
                    sliver_id: ev
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut attrs| attrs.remove(labels::SLIVER)),
                    action: ev.action.unwrap_or_default(),
                })
                .map_err(|e| engine("watch events", e))
            })
            .boxed()
    }
}
