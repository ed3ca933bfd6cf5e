//! Finding the container a session is about: the sliver's container among THIS node's
//! containers only (the runtime is scoped to its node). A sliver id of another node, sharing
//! the engine or not, is refused.

use crate::domain::{ContainerPhase, ObservedSliver};
use crate::runtime::Runtime;

/// The container of `sliver_id` on the runtime's node, or a message for the researcher.
pub async fn find(rt: &impl Runtime, sliver_id: &str) -> Result<ObservedSliver, String> {
    if sliver_id.is_empty() {
        return Err("no sliver named".into());
    }
    let found = rt.find_sliver(sliver_id).await.map_err(|e| {
        tracing::warn!(sliver = sliver_id, error = %e, "cannot list containers");
        "the node cannot reach its container engine".to_string()
    })?;
    found.ok_or_else(|| format!("sliver {sliver_id} has no container on node {}", rt.node()))
}

/// Like [`find`], but the container must be running (exec).
pub async fn find_running(rt: &impl Runtime, sliver_id: &str) -> Result<ObservedSliver, String> {
    let t = find(rt, sliver_id).await?;
    if t.phase != ContainerPhase::Running {
        return Err(format!(
            "sliver {sliver_id} is not running (its container is {})",
            t.phase
        ));
    }
    Ok(t)
}
