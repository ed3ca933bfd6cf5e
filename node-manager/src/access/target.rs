//! Finding the container a session is about: the sliver's container among THIS node's
//! containers only. A sliver id of another node (sharing the engine or not) is refused.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;

use crate::runtime::labels;

/// A sliver's container on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Container id.
    pub id: String,
    /// Engine state (running, exited, ...).
    pub state: String,
}

impl Target {
    /// Whether processes can be started in it.
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// The container of `sliver_id` on `node`, or a message for the researcher.
pub async fn find(docker: &Docker, node: &str, sliver_id: &str) -> Result<Target, String> {
    if sliver_id.is_empty() {
        return Err("no sliver named".into());
    }
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            labels::node_filter(node),
            format!("{}={sliver_id}", labels::SLIVER),
        ],
    )]);
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let found = docker.list_containers(Some(opts)).await.map_err(|e| {
        tracing::warn!(sliver = sliver_id, error = %e, "cannot list containers");
        "the node cannot reach its container engine".to_string()
    })?;
    let c = found
        .into_iter()
        .find(|c| c.id.is_some())
        .ok_or_else(|| format!("sliver {sliver_id} has no container on node {node}"))?;
    Ok(Target {
        id: c.id.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Like [`find`], but the container must be running (exec).
pub async fn find_running(docker: &Docker, node: &str, sliver_id: &str) -> Result<Target, String> {
    let t = find(docker, node, sliver_id).await?;
    if !t.running() {
        return Err(format!(
            "sliver {sliver_id} is not running (its container is {})",
            t.state
        ));
    }
    Ok(t)
}
