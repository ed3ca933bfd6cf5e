//! One sampling pass of the engine's counters: the node's running sliver containers listed
//! once (by its labels), then one non-streaming stats request each (`one-shot`, so the engine
//! does not wait a second more to fill its "previous" figures), many at a time, each bounded
//! in time. It never streams and never keeps a connection per container; rates are computed by
//! the sampler from two passes.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use futures::{StreamExt, TryStreamExt};

use super::connect::engine;
use super::DockerRuntime;
use crate::runtime::{labels, ContainerStats, Result};

/// Stats requests in flight at once. Cheap for the engine: it measures every container it is
/// asked about once per second (its stats collector) and answers all waiting requests from that
/// one measurement, so a request mostly waits for the next tick; few at a time would make a
/// pass of N containers take N / CONCURRENCY seconds.
const CONCURRENCY: usize = 32;
/// Longest wait for one container's stats.
const PER_CONTAINER: Duration = Duration::from_secs(2);

/// Memory in use without the reclaimable page cache, as `docker stats` shows it (cgroup v2
/// names it `inactive_file`, v1 `total_inactive_file`).
fn working_set(s: &ContainerStatsResponse) -> i64 {
    let Some(m) = &s.memory_stats else { return 0 };
    let usage = m.usage.unwrap_or(0);
    let cache = m
        .stats
        .as_ref()
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    i64::try_from(usage.saturating_sub(cache)).unwrap_or(i64::MAX)
}

/// The counters of one stats answer.
pub(super) fn counters(
    container_id: String,
    sliver_id: String,
    s: &ContainerStatsResponse,
) -> ContainerStats {
    let cpu_nanos = s
        .cpu_stats
        .as_ref()
        .and_then(|c| c.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.iter().flat_map(HashMap::values) {
        rx = rx.saturating_add(n.rx_bytes.unwrap_or(0));
        tx = tx.saturating_add(n.tx_bytes.unwrap_or(0));
    }
    ContainerStats {
        container_id,
        sliver_id,
        cpu_nanos,
        memory_bytes: working_set(s),
        net_rx_bytes: rx,
        net_tx_bytes: tx,
    }
}

impl DockerRuntime {
    /// See [`crate::runtime::Runtime::stats`].
    pub(super) async fn container_stats(&self) -> Result<Vec<ContainerStats>> {
        let mut filters = self.node_filters();
        filters.insert("status".into(), vec!["running".into()]);
        let opts = ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine("list containers for stats", e))?;
        let running: Vec<(String, String)> = list
            .into_iter()
            .filter_map(|c| {
                let l = c.labels?;
                if l.get(labels::NODE) != Some(&self.node) {
                    return None;
                }
                Some((c.id?, l.get(labels::SLIVER)?.clone()))
            })
            .collect();
        let out = futures::stream::iter(running)
            .map(|(id, sliver)| async move {
                let opts = StatsOptions {
                    stream: false,
                    one_shot: true,
                };
                let mut answers = std::pin::pin!(self.docker.stats(&id, Some(opts)));
                match tokio::time::timeout(PER_CONTAINER, answers.try_next()).await {
                    Ok(Ok(Some(s))) => Some(counters(id, sliver, &s)),
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) => {
                        tracing::debug!(container = %id, error = %e, "no stats for container");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(container = %id, "stats took too long; left out of this pass");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerNetworkStats,
    };

    #[test]
    fn counters_sum_interfaces_and_leave_out_the_page_cache() {
        let net = |rx, tx| ContainerNetworkStats {
            rx_bytes: Some(rx),
            tx_bytes: Some(tx),
            ..Default::default()
        };
        let s = ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(5_000_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100 << 20),
                stats: Some(HashMap::from([("inactive_file".to_string(), 30 << 20)])),
                ..Default::default()
            }),
            networks: Some(HashMap::from([
                ("eth0".to_string(), net(1000, 10)),
                ("eth1".to_string(), net(24, 5)),
            ])),
            ..Default::default()
        };
        let c = counters("c1".into(), "v1".into(), &s);
        assert_eq!(c.cpu_nanos, 5_000_000_000);
        assert_eq!(c.memory_bytes, 70 << 20);
        assert_eq!((c.net_rx_bytes, c.net_tx_bytes), (1024, 15));
        // cgroup v1 names, and nothing at all.
        let mut v1 = s.clone();
        v1.memory_stats.as_mut().unwrap().stats = Some(HashMap::from([(
            "total_inactive_file".to_string(),
            50 << 20,
        )]));
        assert_eq!(counters("c".into(), "v".into(), &v1).memory_bytes, 50 << 20);
        let empty = counters("c".into(), "v".into(), &ContainerStatsResponse::default());
        assert_eq!(
            (empty.cpu_nanos, empty.memory_bytes, empty.net_rx_bytes),
            (0, 0, 0)
        );
    }
}
