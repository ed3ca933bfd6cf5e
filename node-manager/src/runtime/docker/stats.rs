//! One sampling pass of the engine's counters: the node's running sliver containers listed
//! once (by its labels), then one non-streaming stats request each (`one-shot`, so the engine
//! does not wait a second more to fill its "previous" figures), many at a time, each bounded
//! in time. It never streams and never keeps a connection per container; rates are computed by
//! the sampler from two passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// When each running container of this node started, by container id: read once per
/// container (one inspect when it is first seen running), forgotten once it no longer runs.
pub(super) type StartTimes = Arc<Mutex<HashMap<String, Option<SystemTime>>>>;

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Docker's UTC times ("2026-12-01T17:09:28.098587812Z"); `None` for anything else, and for
/// the zero time of a container that never started.
pub(super) fn parse_utc(s: &str) -> Option<SystemTime> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let num = |p: Option<&str>| p.and_then(|v| v.parse::<i64>().ok());
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, sec) = (num(t.next())?, num(t.next())?, num(t.next())?);
    if y < 1970 || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
    let secs = days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

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
    started_at: Option<SystemTime>,
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
        started_at,
        read_at: s.read.as_deref().and_then(parse_utc),
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
        let starts = self.start_times(&running).await;
        let out = futures::stream::iter(running)
            .map(|(id, sliver)| {
                let started_at = starts.get(&id).copied().flatten();
                async move {
                let opts = StatsOptions {
                    stream: false,
                    one_shot: true,
                };
                let mut answers = std::pin::pin!(self.docker.stats(&id, Some(opts)));
                match tokio::time::timeout(PER_CONTAINER, answers.try_next()).await {
                    Ok(Ok(Some(s))) => Some(counters(id, sliver, &s, started_at)),
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
            }})
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        Ok(out)
    }

    /// When each of these running containers started: read for those not seen running before
    /// (one inspect each, many at a time), the others from memory.
    async fn start_times(
        &self,
        running: &[(String, String)],
    ) -> HashMap<String, Option<SystemTime>> {
        let fresh: Vec<String> = {
            let known = self.started.lock().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter(|(id, _)| !known.contains_key(id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let found: Vec<(String, Option<SystemTime>)> = futures::stream::iter(fresh)
            .map(|id| async move {
                let inspected =
                    tokio::time::timeout(PER_CONTAINER, self.docker.inspect_container(&id, None))
                        .await;
                let at = inspected
                    .ok()
                    .and_then(|r| r.ok())
                    .and_then(|c| c.state?.started_at)
                    .and_then(|s| parse_utc(&s));
                (id, at)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut known = self.started.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|id, _| running.iter().any(|(r, _)| r == id));
        known.extend(found);
        known.clone()
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
        let c = counters("c1".into(), "v1".into(), &s, None);
        assert_eq!(c.cpu_nanos, 5_000_000_000);
        assert_eq!(c.memory_bytes, 70 << 20);
        assert_eq!((c.net_rx_bytes, c.net_tx_bytes), (1024, 15));
        // cgroup v1 names, and nothing at all.
        let mut v1 = s.clone();
        v1.memory_stats.as_mut().unwrap().stats = Some(HashMap::from([(
            "total_inactive_file".to_string(),
            50 << 20,
        )]));
        assert_eq!(
            counters("c".into(), "v".into(), &v1, None).memory_bytes,
            50 << 20
        );
        let empty = counters(
            "c".into(),
            "v".into(),
            &ContainerStatsResponse::default(),
            None,
        );
        assert_eq!(
            (empty.cpu_nanos, empty.memory_bytes, empty.net_rx_bytes),
            (0, 0, 0)
        );
    }

    #[test]
    fn docker_times_read_as_utc_and_the_zero_time_as_none() {
        let at = parse_utc("2026-12-01T17:09:28.098587812Z").unwrap();
        let d = at.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!((d.as_secs(), d.subsec_nanos()), (1_796_144_968, 98_587_812));
        let d = parse_utc("1970-01-02T00:00:01.5Z")
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap();
        assert_eq!(d, Duration::from_millis(86_401_500));
        assert_eq!(
            parse_utc("2000-02-29T00:00:00Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            951_782_400
        );
        assert_eq!(parse_utc("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_utc("yesterday"), None);
        assert_eq!(parse_utc("2026-12-01T17:09:28+01:00"), None);
    }
}
