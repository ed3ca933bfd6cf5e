//! The exact requests the Kubernetes backend sends, through a `kube::Client` over a
//! `tower_test` mock service: method, path, query (field manager, force, label selectors),
//! content type and body of each server-side apply, answered as a real API server would. The
//! fake API server (kube_runtime.rs) shows the objects work; these show what goes on the wire.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use node_manager::domain::{PortMapping, PullAccess, Resources, RestartPolicy, SliverSpec};
use node_manager::runtime::kubernetes::{names, KubeRuntime};
use node_manager::runtime::Runtime;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower_test::mock;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

impl Call {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Pods the mock server holds, by `namespace/name` (for GET).
type Pods = BTreeMap<String, Value>;

/// What a real API server answers to `c`.
fn answer(c: &Call, pods: &Pods) -> (StatusCode, Value) {
    let stamped = |mut obj: Value| {
        obj["metadata"]["uid"] = json!("0b6f2c1e-1111-4a4a-9c9c-000000000001");
        obj["metadata"]["resourceVersion"] = json!("42");
        obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        obj
    };
    let not_found = |what: &str| {
        (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
        )
    };
    match c.method.as_str() {
        "PATCH" => (StatusCode::OK, stamped(c.body.clone())),
        "GET" if c.path.ends_with("/namespaces") => (
            StatusCode::OK,
            json!({"kind": "NamespaceList", "apiVersion": "v1",
                   "metadata": {"resourceVersion": "42"}, "items": []}),
        ),
        "GET" if c.path.ends_with("/pods") => (
            StatusCode::OK,
            json!({"kind": "PodList", "apiVersion": "v1",
                   "metadata": {"resourceVersion": "42"}, "items": []}),
        ),
        "GET" => {
            let key = c
                .path
                .strip_prefix("/api/v1/namespaces/")
                .map(|p| p.replace("/pods/", "/"))
                .unwrap_or_default();
            match pods.get(&key) {
                Some(p) => (StatusCode::OK, p.clone()),
                None => not_found(&c.path),
            }
        }
        "DELETE" if c.path.contains("/pods/") || c.path.starts_with("/api/v1/namespaces/") => {
            // A Pod or Namespace delete answers with the object, now terminating.
            let mut obj = pods
                .get(
                    &c.path
                        .trim_start_matches("/api/v1/namespaces/")
                        .replace("/pods/", "/"),
                )
                .cloned()
                .unwrap_or_else(|| {
                    json!({"kind": "Namespace", "apiVersion": "v1",
                           "metadata": {"name": c.path.rsplit('/').next().unwrap()},
                           "status": {"phase": "Terminating"}})
                });
            obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
            (StatusCode::OK, obj)
        }
        "DELETE" => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success",
                   "details": {"name": c.path.rsplit('/').next().unwrap()}}),
        ),
        _ => not_found(&c.path),
    }
}

/// A runtime for Kubernetes node `k1` whose requests are recorded and answered by `answer`.
fn mocked(pods: Pods) -> (KubeRuntime, mpsc::UnboundedReceiver<Call>) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut handle = pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, out) = answer(&call, &pods);
            let _ = tx.send(call);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = kube::Client::new(svc, "default");
    let rt = KubeRuntime::new(
        client,
        "sb-k1".into(),
        "k1".into(),
        "192.0.2.7".parse().ok(),
    );
    (rt, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Call>) -> Vec<Call> {
    let mut out = vec![];
    while let Ok(c) = rx.try_recv() {
        out.push(c);
    }
    out
}

fn pinned() -> SliverSpec {
    SliverSpec {
        sliver_id: "s1".into(),
        slice: "web".into(),
        index: 0,
        image: "slicebed/store:abc".into(),
        command: vec!["sleep".into(), "1000".into()],
        env: BTreeMap::new(),
        resources: Resources {
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            disk_bytes: 0,
        },
        ports: vec![PortMapping {
            name: "http".into(),
            container_port: 8080,
            host_port: 30080,
        }],
        restart: RestartPolicy::Always,
        generation: 2,
        lease_expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        image_digest: format!("sha256:{}", "c".repeat(64)),
        pull: Some(PullAccess {
            registry: "reg.example:443".into(),
            repository: "alice/tool".into(),
            username: "slicebed-pull".into(),
            password: "sbp_id.1.mac".into(),
            expires_at: None,
        }),
    }
}

/// Every apply is a server-side apply by the agent's field manager, forced.
fn assert_apply(c: &Call) {
    assert_eq!(c.method, "PATCH", "{c:?}");
    assert_eq!(c.content_type, "application/apply-patch+yaml", "{}", c.path);
    assert_eq!(
        c.query.get("fieldManager").map(String::as_str),
        Some(names::FIELD_MANAGER)
    );
    assert_eq!(
        c.query.get("force").map(String::as_str),
        Some("true"),
        "{}",
        c.path
    );
}

#[tokio::test]
async fn creating_a_pinned_sliver_applies_its_namespace_objects_secret_and_pod() {
    let (rt, mut rx) = mocked(Pods::new());
    let spec = pinned();
    let pod = names::pod_name(&spec);
    let id = rt.create_and_start(&spec).await.unwrap();
    assert_eq!(id, format!("sb-web-k1/{pod}"));
    let calls = drain(&mut rx);
    let ns = "/api/v1/namespaces/sb-web-k1";
    let np = "/apis/networking.k8s.io/v1/namespaces/sb-web-k1/networkpolicies";
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        vec![
            format!("PATCH {ns}"),
            format!("PATCH {np}/slicebed"),
            format!("GET {ns}/pods"),
            format!("PATCH {ns}/resourcequotas/slicebed"),
            format!("PATCH {ns}/limitranges/slicebed"),
            format!("PATCH {np}/published-s1"),
            format!("PATCH {ns}/secrets/slicebed-pull"),
            format!("PATCH {ns}/pods/{pod}"),
        ]
    );
    for c in calls.iter().filter(|c| c.method == "PATCH") {
        assert_apply(c);
        assert_eq!(c.body["metadata"]["labels"]["slicebed.dev/managed"], "true");
        assert_eq!(c.body["metadata"]["labels"]["slicebed.dev/node"], "k1");
        assert_eq!(c.body["metadata"]["labels"]["slicebed.dev/slice"], "web");
    }
    assert_eq!(calls[0].body["kind"], "Namespace");
    // The quota's pod list is the namespace's own, unfiltered: every Pod in it counts.
    assert!(!calls[2].query.contains_key("labelSelector"));
    let quota = &calls[3].body["spec"]["hard"];
    assert_eq!(quota["limits.cpu"], "500m");
    assert_eq!(quota["requests.memory"], (256u64 << 20).to_string());
    assert_eq!(quota["pods"], "1");
    let policy = &calls[1].body["spec"];
    assert_eq!(policy["podSelector"], json!({}));
    // Ingress from the namespace itself and from the slice's namespaces on other nodes.
    assert_eq!(
        policy["ingress"][0]["from"],
        json!([{"podSelector": {}},
               {"namespaceSelector": {"matchLabels": {"slicebed.dev/slice": "web"}}}])
    );
    let secret = &calls[6].body;
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    use base64::Engine;
    let doc: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["auths"]["reg.example:443"]["password"], "sbp_id.1.mac");
    let p = &calls[7].body;
    assert_eq!(p["kind"], "Pod");
    assert_eq!(p["metadata"]["labels"]["slicebed.dev/sliver"], "s1");
    assert_eq!(p["metadata"]["labels"]["slicebed.dev/generation"], "2");
    assert!(p["metadata"]["annotations"]["slicebed.dev/lease-end"].is_string());
    let s = &p["spec"];
    assert_eq!(s["imagePullSecrets"], json!([{"name": "slicebed-pull"}]));
    assert_eq!(s["nodeSelector"], json!({"kubernetes.io/hostname": "k1"}));
    assert_eq!(s["automountServiceAccountToken"], false);
    let deadline = s["activeDeadlineSeconds"].as_i64().unwrap();
    assert!((3590..=3601).contains(&deadline), "{deadline}");
    let c = &s["containers"][0];
    assert_eq!(
        c["image"],
        format!("reg.example:443/alice/tool@sha256:{}", "c".repeat(64))
    );
    assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        c["ports"][0],
        json!({"name": "http", "containerPort": 8080, "hostPort": 30080,
               "hostIP": "192.0.2.7", "protocol": "TCP"})
    );
}

#[tokio::test]
async fn listing_selects_this_nodes_pods_and_namespaces_by_label() {
    let (rt, mut rx) = mocked(Pods::new());
    assert!(rt.list().await.unwrap().is_empty());
    rt.list_networks().await.unwrap();
    let calls = drain(&mut rx);
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        ["GET /api/v1/pods", "GET /api/v1/namespaces"]
    );
    for c in &calls {
        assert_eq!(
            c.query.get("labelSelector").map(String::as_str),
            Some("slicebed.dev/managed=true,slicebed.dev/node=k1")
        );
    }
}

fn stored_pod(node: &str) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": "sb-s1-g2", "namespace": "sb-web-k1",
               "labels": {"slicebed.dev/managed": "true", "slicebed.dev/node": node,
                          "slicebed.dev/slice": "web", "slicebed.dev/sliver": "s1",
                          "slicebed.dev/generation": "2"}},
           "spec": {"containers": [{"name": "sliver", "image": "x"}]},
           "status": {"phase": "Running"}})
}

#[tokio::test]
async fn deleting_a_sliver_deletes_its_pod_and_port_policy_and_shrinks_the_quota() {
    let pods = Pods::from([("sb-web-k1/sb-s1-g2".to_string(), stored_pod("k1"))]);
    let (rt, mut rx) = mocked(pods);
    rt.remove("sb-web-k1/sb-s1-g2").await.unwrap();
    let calls = drain(&mut rx);
    let ns = "/api/v1/namespaces/sb-web-k1";
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        vec![
            format!("GET {ns}/pods/sb-s1-g2"),
            format!("DELETE {ns}/pods/sb-s1-g2"),
            "DELETE /apis/networking.k8s.io/v1/namespaces/sb-web-k1/networkpolicies/published-s1"
                .to_string(),
            format!("GET {ns}/pods"),
            format!("PATCH {ns}/resourcequotas/slicebed"),
            format!("PATCH {ns}/limitranges/slicebed"),
        ]
    );
    assert_eq!(calls[4].body["spec"]["hard"]["pods"], "0");
    // The slice network going takes the namespace (and its pull Secret) with it.
    rt.remove_network("web").await.unwrap();
    assert_eq!(
        drain(&mut rx).iter().map(Call::line).collect::<Vec<_>>(),
        [format!("DELETE {ns}")]
    );
}

#[tokio::test]
async fn another_nodes_pod_is_read_but_never_deleted() {
    let pods = Pods::from([("sb-web-k1/sb-s1-g2".to_string(), stored_pod("k2"))]);
    let (rt, mut rx) = mocked(pods);
    rt.remove("sb-web-k1/sb-s1-g2").await.unwrap();
    assert!(rt.inspect("sb-web-k1/sb-s1-g2").await.unwrap().is_none());
    assert_eq!(
        drain(&mut rx).iter().map(Call::line).collect::<Vec<_>>(),
        ["GET /api/v1/namespaces/sb-web-k1/pods/sb-s1-g2"; 2]
    );
}
