//! Pinned images on a Kubernetes site, end to end: a real slice-service serving its `/v2`
//! registry, a `--runtime kubernetes` node manager on the fake API server's binary (checked
//! with kubectl). The Pod the cluster got pulls the pinned digest from the service's registry
//! with the slice namespace's pull Secret, and the credential in that Secret opens exactly
//! that image there. A renewal past the Pod's deadline replaces the Pod with one whose deadline
//! reaches the new lease, and the Secret with a renewed credential.

mod common;
// Shared with image_store.rs, which uses all of it; this file only pushes.
#[allow(dead_code)]
#[path = "image_store/push.rs"]
mod push;

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use common::testbed::{wait_running, web_slice};
use common::{make_site, wait_ready};
use push::{images, push_image};
use slicebed_proto::v1 as pb;
use slicebed_tests::kube::{skip_without_kubectl, FakeKubeProcess, KubeAgent};
use slicebed_tests::nm::unique;
use slicebed_tests::{wait_for, Clients, Service};

/// The status of `GET path` on the registry with `bearer`.
fn registry_get(addr: &str, path: &str, bearer: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the registry");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The password of the namespace's pull Secret for `registry`.
fn pull_password(fake: &FakeKubeProcess, ns: &str, registry: &str) -> String {
    let secret = fake.kubectl_json(&["get", "secret", "slicebed-pull", "-n", ns]);
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let doc: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    doc["auths"][registry]["password"]
        .as_str()
        .expect("credentials for the service's registry")
        .to_string()
}

#[tokio::test]
async fn a_kubernetes_site_pulls_the_pinned_digest_with_the_slice_pull_secret_and_renews_it() {
    if skip_without_kubectl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKubeProcess::start(tmp.path(), 1, false).await;

    let svc = Service::start_with("[registry]\nlisten = \"127.0.0.1:0\"\n").await;
    let registry = std::fs::read_to_string(svc.dir.join("registry.addr")).unwrap();
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "kube").await;
    let mut imgs = images(&svc, &svc.admin_token).await;
    let tool = push_image(&mut imgs, "admin/tool:v1", &[&b"tool layer"[..]], "tool")
        .await
        .expect("push");
    let other = push_image(&mut imgs, "admin/other:v1", &[&b"other layer"[..]], "other")
        .await
        .expect("push");
    let _agent = KubeAgent::single_node(
        &svc,
        &admin,
        "kube",
        &unique("kube"),
        "fake-node-1",
        (29520, 29539),
        tmp.path(),
        &fake.kubeconfig,
    )
    .await;
    wait_ready(&admin, 1).await;

    let name = unique("pinned");
    let mut req = web_slice(&name, 1);
    req.image = "admin/tool:v1".into();
    req.lease = Some(prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    });
    admin
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create");
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.image_digest, tool.digest);
    let ns = format!("sb-{name}-fake-node-1");

    let pods = fake.kubectl_json(&["get", "pods", "-n", &ns]);
    let pod = &pods["items"][0];
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        format!("{registry}/admin/tool@{}", tool.digest),
        "the pinned digest from the service's registry"
    );
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        serde_json::json!([{"name": "slicebed-pull"}])
    );
    let first_pod = pod["metadata"]["name"].as_str().unwrap().to_string();
    let first_deadline = pod["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert!(first_deadline <= 3600, "{first_deadline}");

    // What the cluster's nodes would pull with: that image, nothing else.
    let password = pull_password(&fake, &ns, &registry);
    let manifest = format!("/v2/admin/tool/manifests/{}", tool.digest);
    assert_eq!(registry_get(&registry, &manifest, &password), 200);
    assert_eq!(
        registry_get(
            &registry,
            &format!("/v2/admin/tool/blobs/{}", tool.config),
            &password
        ),
        200
    );
    assert_eq!(
        registry_get(
            &registry,
            &format!("/v2/admin/other/manifests/{}", other.digest),
            &password
        ),
        403
    );

    // Renewed to 3 hours: the Pod is replaced with one whose deadline reaches the new end,
    // the Secret carries a renewed credential, and the sliver runs again.
    admin
        .slices
        .clone()
        .renew_slice(pb::RenewSliceRequest {
            name: name.clone(),
            duration: Some(prost_types::Duration {
                seconds: 3 * 3600,
                nanos: 0,
            }),
        })
        .await
        .expect("renew");
    let renewed = wait_for("the replacement Pod", Duration::from_secs(60), || async {
        let pods = fake.kubectl_json(&["get", "pods", "-n", &ns]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] != first_pod.as_str())
            .filter(|p| p["status"]["phase"] == "Running")
            .cloned()
    })
    .await;
    let deadline = renewed["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert!(deadline > 2 * 3600, "the new deadline: {deadline}");
    let s = wait_running(&admin, &name).await;
    assert_eq!(s.slivers[0].state, pb::SliverState::Running as i32);
    let events = common::events(&admin, &format!("sliver/{}", s.slivers[0].id)).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "state creating" && e.detail.contains("renewed lease")),
        "the restart is explained: {events:?}"
    );
    let renewed_password = pull_password(&fake, &ns, &registry);
    assert_ne!(renewed_password, password);
    assert_eq!(registry_get(&registry, &manifest, &renewed_password), 200);

    // Deleted: the credential the cluster holds opens nothing any more.
    admin
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: name.clone() })
        .await
        .expect("delete");
    assert_eq!(registry_get(&registry, &manifest, &renewed_password), 401);
}
