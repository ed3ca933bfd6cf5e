//! The node manager's metrics, for the site's own Prometheus (`run --metrics-listen ADDR`,
//! off by default): reconcile passes, engine calls (latency and errors by operation), the
//! node's slivers by state, image fetches. One registry per agent (no global state); every
//! series carries a constant `node` label, and nothing is labelled by sliver or slice.
//!
//! Engine calls are measured by [`Instrumented`], a [`Runtime`] around the real one, so no
//! backend and no caller changes; passes are recorded by the agent's worker.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{ObservedSliver, ReportedState, SliverSpec};
use crate::runtime::{
    Capabilities, DiskUse, ExecProcess, ExecSpec, ImageImport, LogsSpec, Output, Result, Runtime,
    RuntimeChange, RuntimeError, TermSize,
};

/// Prefix of every metric name.
pub const PREFIX: &str = "slicebed_node_manager";

/// Engine latency buckets, in seconds: from a list (ms) to a container creation (s).
const ENGINE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Reconcile pass buckets, in seconds.
const PASS_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// States a sliver is reported in (as the service sees them).
const STATES: [(ReportedState, &str); 5] = [
    (ReportedState::Creating, "creating"),
    (ReportedState::Running, "running"),
    (ReportedState::Exited, "exited"),
    (ReportedState::Failed, "failed"),
    (ReportedState::Suspended, "suspended"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpErrorLabels {
    op: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// One agent's metrics; cheap to clone (all clones count into the same registry).
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    registry: Arc<Registry>,
    passes: Family<ResultLabels, Counter>,
    pass_duration: Histogram,
    engine_duration: Family<OpLabels, Histogram>,
    engine_errors: Family<OpErrorLabels, Counter>,
    slivers: Family<StateLabels, Gauge>,
    image_fetches: Family<ResultLabels, Counter>,
}

fn engine_histogram() -> Histogram {
    Histogram::new(ENGINE_BUCKETS)
}

impl NodeMetrics {
    /// A fresh registry for node `node`.
    pub fn new(node: &str) -> Self {
        let mut r = Registry::with_prefix_and_labels(
            PREFIX,
            [(Cow::Borrowed("node"), Cow::Owned(node.to_string()))].into_iter(),
        );
        let m = Self {
            registry: Arc::default(),
            passes: Family::default(),
            pass_duration: Histogram::new(PASS_BUCKETS),
            engine_duration: Family::new_with_constructor(engine_histogram as fn() -> Histogram),
            engine_errors: Family::default(),
            slivers: Family::default(),
            image_fetches: Family::default(),
        };
        for result in ["ok", "failed"] {
            let _ = m.passes.get_or_create(&ResultLabels { result });
            let _ = m.image_fetches.get_or_create(&ResultLabels { result });
        }
        for (_, state) in STATES {
            let _ = m.slivers.get_or_create(&StateLabels { state });
        }
        r.register(
            "reconcile_passes",
            "Reconcile passes by result: ok, or failed (the engine could not be listed; the node reports it unavailable)",
            m.passes.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Time one reconcile pass took (observe, act, observe again)",
            Unit::Seconds,
            m.pass_duration.clone(),
        );
        r.register_with_unit(
            "engine_request_duration",
            "Time container-engine calls took, by operation (streams such as logs and copies are not timed)",
            Unit::Seconds,
            m.engine_duration.clone(),
        );
        r.register(
            "engine_errors",
            "Container-engine calls that failed, by operation and kind (unavailable: no answer; engine: refused or failed; image_missing)",
            m.engine_errors.clone(),
        );
        r.register(
            "slivers",
            "This node's sliver containers by state, as last listed from the engine",
            m.slivers.clone(),
        );
        r.register(
            "image_fetches",
            "Image fetches from the image store by result (ok: verified and loaded; failed: a blob refused or unreachable, or the load failed)",
            m.image_fetches.clone(),
        );
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Records one reconcile pass.
    pub fn reconcile_pass(&self, took: Duration, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.passes.get_or_create(&ResultLabels { result }).inc();
        self.pass_duration.observe(took.as_secs_f64());
    }

    /// Records one image fetch from the image store.
    pub fn image_fetch(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.image_fetches
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    fn engine_call<T>(&self, op: &'static str, took: Duration, r: &Result<T>) {
        self.engine_duration
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
        if let Err(e) = r {
            let kind = match e {
                RuntimeError::Unavailable { .. } => "unavailable",
                RuntimeError::Engine { .. } => "engine",
                RuntimeError::ImageMissing { .. } => "image_missing",
            };
            self.engine_errors
                .get_or_create(&OpErrorLabels { op, kind })
                .inc();
        }
    }

    fn observed(&self, list: &[ObservedSliver]) {
        let mut counts = [0i64; STATES.len()];
        for r in list.iter().filter_map(crate::reports::report_for) {
            if let Some(i) = STATES.iter().position(|(s, _)| *s == r.state) {
                counts[i] += 1;
            }
        }
        for ((_, state), n) in STATES.iter().zip(counts) {
            self.slivers.get_or_create(&StateLabels { state }).set(n);
        }
    }

    /// The metrics as OpenMetrics text, or the Prometheus text format 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

/// A runtime that times every engine call into [`NodeMetrics`] and notes the slivers each
/// listing shows; otherwise exactly the runtime it wraps.
#[derive(Clone, Debug)]
pub struct Instrumented<R> {
    inner: R,
    m: NodeMetrics,
}

impl<R> Instrumented<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, m: NodeMetrics) -> Self {
        Self { inner, m }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let r = f.await;
        self.m.engine_call(op, start.elapsed(), &r);
        r
    }
}

impl<R: Runtime> Runtime for Instrumented<R> {
    fn node(&self) -> &str {
        self.inner.node()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn ensure_network(&self, slice: &str) -> Result<()> {
        self.timed("ensure_network", self.inner.ensure_network(slice))
            .await
    }

    async fn remove_network(&self, slice: &str) -> Result<()> {
        self.timed("remove_network", self.inner.remove_network(slice))
            .await
    }

    async fn list_networks(&self) -> Result<Vec<String>> {
        self.timed("list_networks", self.inner.list_networks())
            .await
    }

    async fn create_and_start(&self, spec: &SliverSpec) -> Result<String> {
        self.timed("create_and_start", self.inner.create_and_start(spec))
            .await
    }

    async fn start(&self, container_id: &str) -> Result<()> {
        self.timed("start", self.inner.start(container_id)).await
    }

    async fn pause(&self, container_id: &str) -> Result<()> {
        self.timed("pause", self.inner.pause(container_id)).await
    }

    async fn unpause(&self, container_id: &str) -> Result<()> {
        self.timed("unpause", self.inner.unpause(container_id))
            .await
    }

    async fn stop(&self, container_id: &str) -> Result<()> {
        self.timed("stop", self.inner.stop(container_id)).await
    }

    async fn disk_usage(&self) -> Result<Vec<DiskUse>> {
        self.timed("disk_usage", self.inner.disk_usage()).await
    }

    async fn stats(&self) -> Result<Vec<crate::runtime::ContainerStats>> {
        self.timed("stats", self.inner.stats()).await
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        self.timed("remove", self.inner.remove(container_id)).await
    }

    async fn list(&self) -> Result<Vec<ObservedSliver>> {
        let r = self.timed("list", self.inner.list()).await;
        if let Ok(list) = &r {
            self.m.observed(list);
        }
        r
    }

    async fn find_sliver(&self, sliver_id: &str) -> Result<Option<ObservedSliver>> {
        self.timed("find_sliver", self.inner.find_sliver(sliver_id))
            .await
    }

    async fn inspect(&self, container: &str) -> Result<Option<ObservedSliver>> {
        self.timed("inspect", self.inner.inspect(container)).await
    }

    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }

    fn changes(&self) -> BoxStream<'static, Result<RuntimeChange>> {
        self.inner.changes()
    }

    async fn exec(&self, container_id: &str, spec: ExecSpec) -> Result<ExecProcess> {
        self.timed("exec", self.inner.exec(container_id, spec))
            .await
    }

    async fn resize_exec(&self, exec_id: &str, size: TermSize) -> Result<()> {
        self.timed("resize_exec", self.inner.resize_exec(exec_id, size))
            .await
    }

    async fn wait_exec(&self, exec_id: &str) -> Result<Option<i64>> {
        self.timed("wait_exec", self.inner.wait_exec(exec_id)).await
    }

    fn logs(&self, container_id: &str, spec: LogsSpec) -> BoxStream<'static, Result<Output>> {
        self.inner.logs(container_id, spec)
    }

    async fn copy_in(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        self.timed("copy_in", self.inner.copy_in(container_id, dir, tar))
            .await
    }

    fn copy_out(&self, container_id: &str, path: &str) -> BoxStream<'static, Result<Bytes>> {
        self.inner.copy_out(container_id, path)
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.timed("image_id", self.inner.image_id(reference)).await
    }

    async fn import_image(&self, image: ImageImport) -> Result<()> {
        self.timed("import_image", self.inner.import_image(image))
            .await
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        self.timed("remove_image", self.inner.remove_image(id))
            .await
    }

    async fn load_image(
        &self,
        reference: &str,
        archive: futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    ) -> Result<()> {
        self.timed("load_image", self.inner.load_image(reference, archive))
            .await
    }
}

/// Binds `addr`, writes the bound address to `<state_dir>/metrics.addr` (for port 0) and
/// serves `GET /metrics` (plain HTTP) in a task; abort the handle to stop. Not
/// authenticated: bind it where only the site's monitoring reaches.
pub async fn start(
    addr: &str,
    state_dir: &std::path::Path,
    m: NodeMetrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    slicebed_http::metrics::start(addr, &state_dir.join("metrics.addr"), move |openmetrics| {
        let m = m.clone();
        async move { m.render(openmetrics) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[tokio::test]
    async fn engine_calls_and_passes_are_counted_under_the_node_label() {
        let m = NodeMetrics::new("n1");
        let rt = Instrumented::new(FakeRuntime::new("n1"), m.clone());
        rt.list().await.unwrap();
        rt.ping().await.unwrap();
        m.reconcile_pass(Duration::from_millis(5), true);
        m.reconcile_pass(Duration::from_millis(5), false);
        let t = m.render(false);
        for want in [
            "slicebed_node_manager_engine_request_duration_seconds_count{node=\"n1\",op=\"list\"} 1",
            "slicebed_node_manager_engine_request_duration_seconds_count{node=\"n1\",op=\"ping\"} 1",
            "slicebed_node_manager_reconcile_passes_total{node=\"n1\",result=\"ok\"} 1",
            "slicebed_node_manager_reconcile_passes_total{node=\"n1\",result=\"failed\"} 1",
            "slicebed_node_manager_slivers{node=\"n1\",state=\"running\"} 0",
            "slicebed_node_manager_image_fetches_total{node=\"n1\",result=\"ok\"} 0",
        ] {
            assert!(t.contains(want), "{want} missing from:\n{t}");
        }
    }

    #[test]
    fn the_operations_guide_uses_only_names_the_node_manager_exports() {
        let t = NodeMetrics::new("n1").render(false);
        let doc = include_str!("../../docs/operations.md");
        let mut used = 0;
        for (i, _) in doc.match_indices(PREFIX) {
            let name: String = doc[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.ends_with('_') {
                continue;
            }
            used += 1;
            assert!(
                t.contains(&format!("# TYPE {name} "))
                    || ["_bucket", "_sum", "_count"].iter().any(|s| name
                        .strip_suffix(s)
                        .is_some_and(|base| t.contains(&format!("# TYPE {base} histogram")))),
                "docs/operations.md names {name}, which is not exported:\n{t}"
            );
        }
        assert!(used > 0);
    }
}
