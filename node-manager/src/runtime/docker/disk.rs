//! Sliver disk on the engine: whether the engine itself can cap a container's writable layer
//! (`--storage-opt size=`, which only some storage drivers accept: asked once, from the
//! driver's info, and given up for good on the first refusal), what each container wrote
//! (`SizeRw`, for the node manager's own enforcement where the engine cannot), and stopping
//! a container without removing it. It never removes anything and never reads inside a
//! container: the engine's measure is the only one.

use std::sync::atomic::Ordering;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{ListContainersOptions, StopContainerOptions};

use super::connect::{engine, engine_message, is_already_state, is_not_found};
use super::DockerRuntime;
use crate::runtime::{labels, DiskUse, Result};

/// Seconds a sliver stopped for its disk use gets between SIGTERM and SIGKILL.
const STOP_GRACE_SECS: i32 = 5;

/// [`DockerRuntime::storage_opt`] values.
pub(super) const UNKNOWN: u8 = 0;
const SUPPORTED: u8 = 1;
const UNSUPPORTED: u8 = 2;

/// Whether a storage driver may honour `--storage-opt size=` (overlay2 only over xfs, and
/// then only with project quotas, which only a try tells).
fn driver_may_limit(driver: &str, backing: Option<&str>) -> bool {
    match driver {
        "btrfs" | "zfs" | "windowsfilter" => true,
        "overlay2" => backing == Some("xfs"),
        _ => false,
    }
}

/// Whether an engine error refuses the size option (and nothing else).
pub(super) fn is_storage_opt_refusal(e: &DockerError) -> bool {
    let m = engine_message(e).to_ascii_lowercase();
    m.contains("storage-opt") || m.contains("storage opt") || m.contains("pquota")
}

impl DockerRuntime {
    /// Whether to ask the engine to cap a new container's writable layer.
    pub(super) async fn storage_opt_supported(&self) -> bool {
        match self.storage_opt.load(Ordering::Acquire) {
            SUPPORTED => return true,
            UNSUPPORTED => return false,
            _ => {}
        }
        let Ok(info) = self.docker.info().await else {
            return false;
        };
        let driver = info.driver.unwrap_or_default();
        let backing = info
            .driver_status
            .unwrap_or_default()
            .into_iter()
            .find_map(|kv| {
                (kv.first().map(String::as_str) == Some("Backing Filesystem"))
                    .then(|| kv.get(1).cloned())
                    .flatten()
            });
        let may = driver_may_limit(&driver, backing.as_deref());
        tracing::info!(
            %driver,
            backing = backing.as_deref().unwrap_or("?"),
            enforced_by_engine = may,
            "sliver disk limits: {}",
            if may {
                "the engine caps each writable layer"
            } else {
                "measured by the node manager (the storage driver cannot cap a container)"
            }
        );
        self.storage_opt
            .store(if may { SUPPORTED } else { UNSUPPORTED }, Ordering::Release);
        may
    }

    /// The engine refused the size option after all: measure from now on.
    pub(super) fn storage_opt_refused(&self, e: &DockerError) {
        tracing::warn!(error = %engine_message(e), "the engine cannot cap a container's disk; disk limits are measured by the node manager instead");
        self.storage_opt.store(UNSUPPORTED, Ordering::Release);
    }

    pub(super) async fn stop_container(&self, container_id: &str) -> Result<()> {
        let opts = StopContainerOptions {
            t: Some(STOP_GRACE_SECS),
            signal: None,
        };
        match self.docker.stop_container(container_id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_already_state(&e, "not running") => Ok(()),
            // 304: already stopped.
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine(format!("stop container {container_id}"), e)),
        }
    }

    /// What this node's containers wrote (the engine walks their writable layers).
    pub(super) async fn container_disk_usage(&self) -> Result<Vec<DiskUse>> {
        let opts = ListContainersOptions {
            all: true,
            size: true,
            filters: Some(self.node_filters()),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine("measure container disk use", e))?;
        Ok(list
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_some_and(|l| l.get(labels::NODE) == Some(&self.node))
            })
            .filter_map(|c| {
                Some(DiskUse {
                    container_id: c.id?,
                    bytes: c.size_rw.unwrap_or(0),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drivers_with_quotas_may_cap_a_container() {
        assert!(driver_may_limit("overlay2", Some("xfs")));
        assert!(!driver_may_limit("overlay2", Some("extfs")));
        assert!(!driver_may_limit("fuse-overlayfs", None));
        assert!(!driver_may_limit("vfs", None));
        assert!(driver_may_limit("btrfs", None));
    }

    #[test]
    fn recognises_the_engines_refusal_of_the_size_option() {
        let e = DockerError::DockerResponseServerError {
            status_code: 500,
            message:
                "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                    .into(),
        };
        assert!(is_storage_opt_refusal(&e));
        let e = DockerError::DockerResponseServerError {
            status_code: 409,
            message: "Conflict. The container name is already in use".into(),
        };
        assert!(!is_storage_opt_refusal(&e));
    }
}
