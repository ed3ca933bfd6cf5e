//! CRUD through kube's real Client: each kind round-trips, and the refusals a real API server
//! makes (401, 404, 409 AlreadyExists and Conflict, 422) come back as kube API errors.

mod common;

use common::{code, namespace, pod, start};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, Pod, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn every_kind_round_trips_through_kube() {
    let env = start(1).await;
    let c = env.client.clone();
    namespace(&c, "s1").await;
    let pp = PostParams::default();

    let rq: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "q"},
        "spec": {"hard": {"limits.cpu": "1", "limits.memory": "128Mi", "pods": "2"}}}))
    .unwrap();
    let rqs = Api::<ResourceQuota>::namespaced(c.clone(), "s1");
    rqs.create(&pp, &rq).await.unwrap();
    let got = rqs.get("q").await.unwrap();
    assert_eq!(got.spec.unwrap().hard.unwrap()["pods"].0, "2");

    let lr: LimitRange = serde_json::from_value(json!({"metadata": {"name": "l"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}))
    .unwrap();
    Api::<LimitRange>::namespaced(c.clone(), "s1")
        .create(&pp, &lr)
        .await
        .unwrap();

    let np: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "isolate"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}]}]}}))
    .unwrap();
    let nps = Api::<NetworkPolicy>::namespaced(c.clone(), "s1");
    nps.create(&pp, &np).await.unwrap();
    assert_eq!(
        nps.get("isolate")
            .await
            .unwrap()
            .spec
            .unwrap()
            .policy_types
            .unwrap(),
        vec!["Ingress"]
    );
    // The stored object is what the client wrote, as a test of the product would read it.
    assert_eq!(
        env.fake.get("networkpolicies", "s1", "isolate").unwrap()["spec"]["policyTypes"][0],
        "Ingress"
    );

    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}))
    .unwrap();
    Api::<Service>::namespaced(c.clone(), "s1")
        .create(&pp, &svc)
        .await
        .unwrap();

    let pods = Api::<Pod>::namespaced(c.clone(), "s1");
    let created = pods
        .create(&pp, &pod("p1", Some("fake-node-1")))
        .await
        .unwrap();
    assert_eq!(
        created.status.unwrap().qos_class.as_deref(),
        Some("Guaranteed")
    );
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let nodes = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(nodes.items.len(), 1);

    // Deletes: a plain object goes at once; a bound Pod is deleted gracefully.
    nps.delete("isolate", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(nps.get("isolate").await.unwrap_err()), 404);
    let d = pods.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(
        d.left()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        "a bound Pod is deleted gracefully"
    );
}

#[tokio::test]
async fn refusals_match_the_api_server() {
    let env = start(1).await;
    let c = env.client.clone();
    namespace(&c, "s1").await;
    let pp = PostParams::default();
    let pods = Api::<Pod>::namespaced(c.clone(), "s1");
    pods.create(&pp, &pod("p1", None)).await.unwrap();

    let e = pods.create(&pp, &pod("p1", None)).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{e:?}"
    );

    let e = pods.get("nope").await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound" && s.message.contains("nope")),
        "{e:?}"
    );

    let no_image: Pod = serde_json::from_value(json!({"metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "main"}]}}))
    .unwrap();
    let e = pods.create(&pp, &no_image).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 422 && s.message.contains("image: Required")),
        "{e:?}"
    );

    let e = Api::<Pod>::namespaced(c.clone(), "missing")
        .create(&pp, &pod("x", None))
        .await
        .unwrap_err();
    assert_eq!(code(e), 404, "a Pod in a namespace that does not exist");

    // Optimistic concurrency: a replace carrying an old resourceVersion is a 409 Conflict.
    let nodes = Api::<Node>::all(c.clone());
    let mut n = nodes.get("fake-node-1").await.unwrap();
    let stale = n.clone();
    n.metadata
        .labels
        .get_or_insert_default()
        .insert("zone".into(), "a".into());
    let updated = nodes.replace("fake-node-1", &pp, &n).await.unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        stale.metadata.resource_version
    );
    let e = nodes.replace("fake-node-1", &pp, &stale).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{e:?}"
    );

    // A Pod's spec is immutable beyond its images and deadline, as on a real server.
    let p = pods.get("p1").await.unwrap();
    let mut changed = p.clone();
    changed.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    // Unconditional (no resourceVersion): the simulated kubelet may have written the Pod since.
    changed.metadata.resource_version = None;
    assert_eq!(
        code(pods.replace("p1", &pp, &changed).await.unwrap_err()),
        422
    );

    // A wrong token is refused with a 401 Status before anything is read.
    let mut wrong = kube::Config::new(env.fake.url().parse().unwrap());
    wrong.root_cert = Some(vec![pem_der(env.fake.ca_pem().unwrap())]);
    wrong.auth_info.token = Some("not-the-token".to_string().into());
    let bad = kube::Client::try_from(wrong).unwrap();
    let e = Api::<Namespace>::all(bad)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 401 && s.reason == "Unauthorized"),
        "{e:?}"
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn server_side_apply_creates_then_updates_and_selectors_filter_lists() {
    let env = start(2).await;
    let c = env.client.clone();
    let nss = Api::<Namespace>::all(c.clone());
    let ssa = PatchParams::apply("slicebed-node-manager");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "slice-a", "labels": {"slicebed.dev/slice": "a"}}});
    let first = nss
        .patch("slice-a", &ssa, &Patch::Apply(&ns))
        .await
        .unwrap();
    assert_eq!(first.status.unwrap().phase.as_deref(), Some("Active"));
    let managers: Vec<_> = first
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(managers, vec!["slicebed-node-manager"]);

    let ns2 = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "slice-a", "labels": {"slicebed.dev/slice": "a", "slicebed.dev/owner": "alice"}}});
    let second = nss
        .patch("slice-a", &ssa, &Patch::Apply(&ns2))
        .await
        .unwrap();
    assert_eq!(
        second.metadata.uid, first.metadata.uid,
        "apply updated the same object"
    );
    assert_eq!(
        second.metadata.labels.unwrap()["slicebed.dev/owner"],
        "alice"
    );
    // Applying the same thing again changes nothing, so the resourceVersion stays.
    let third = nss
        .patch("slice-a", &ssa, &Patch::Apply(&ns2))
        .await
        .unwrap();
    assert_eq!(
        third.metadata.resource_version,
        second.metadata.resource_version
    );

    // Apply without a field manager is refused, as on a real server.
    let e = nss
        .patch("slice-b", &PatchParams::default(), &Patch::Apply(&ns2))
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);

    // Merge patch (kubectl label) and a label selector list.
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    let lp = ListParams::default().labels("slicebed.dev/slice=a");
    let names: Vec<_> = nss
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, vec!["slice-a"]);
    let lp = ListParams::default().labels("slicebed.dev/slice");
    assert_eq!(nss.list(&lp).await.unwrap().items.len(), 1);

    // Field selectors: Pods by node.
    let pods = Api::<Pod>::namespaced(c.clone(), "slice-a");
    pods.create(
        &PostParams::default(),
        &common::pod("on1", Some("fake-node-1")),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &common::pod("on2", Some("fake-node-2")),
    )
    .await
    .unwrap();
    let lp = ListParams::default().fields("spec.nodeName=fake-node-2");
    let names: Vec<_> = Api::<Pod>::all(c.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, vec!["on2"]);
    let e = Api::<Pod>::all(c.clone())
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .unwrap_err();
    assert_eq!(code(e), 400);
}

#[tokio::test]
async fn resource_quotas_refuse_pods_past_their_hard_limits_and_report_usage() {
    let env = start(1).await;
    let c = env.client.clone();
    namespace(&c, "s1").await;
    let pp = PostParams::default();
    let rq: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "slice"},
        "spec": {"hard": {"limits.cpu": "1", "limits.memory": "128Mi", "pods": "2"}}}))
    .unwrap();
    Api::<ResourceQuota>::namespaced(c.clone(), "s1")
        .create(&pp, &rq)
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(c.clone(), "s1");
    pods.create(&pp, &pod("a", Some("fake-node-1")))
        .await
        .unwrap();
    pods.create(&pp, &pod("b", Some("fake-node-1")))
        .await
        .unwrap();
    let e = pods
        .create(&pp, &pod("c", Some("fake-node-1")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("exceeded quota: slice")),
        "{e:?}"
    );
    let mut unbounded = pod("d", Some("fake-node-1"));
    unbounded.spec.as_mut().unwrap().containers[0].resources = None;
    let e = pods.create(&pp, &unbounded).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("must specify limits.cpu")),
        "{e:?}"
    );
    let quotas = Api::<ResourceQuota>::namespaced(c.clone(), "s1");
    common::wait_for(10, "the quota's usage", || async {
        let used = quotas.get("slice").await.ok()?.status?.used?;
        (used.get("pods")?.0 == "2" && used.get("limits.cpu")?.0 == "1000m").then_some(())
    })
    .await;
    // Room comes back when a Pod goes.
    pods.delete(
        "a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    pods.create(&pp, &pod("c", Some("fake-node-1")))
        .await
        .unwrap();
}

#[tokio::test]
async fn re_applying_a_pod_keeps_server_defaults_and_changes_only_what_changed() {
    let env = start(1).await;
    let c = env.client.clone();
    namespace(&c, "s1").await;
    let pods = Api::<Pod>::namespaced(c.clone(), "s1");
    let ssa = PatchParams::apply("slicebed-node-manager");
    let mut body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "fake-node-1", "containers": [{"name": "main", "image": "img:1",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}});
    let first = pods.patch("p", &ssa, &Patch::Apply(&body)).await.unwrap();
    let c0 = &first.spec.as_ref().unwrap().containers[0];
    assert_eq!(c0.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert!(
        c0.resources.as_ref().unwrap().requests.is_some(),
        "requests defaulted from limits"
    );
    // The same apply again: the containers list merges by name onto the defaulted one, so
    // nothing changes, as on a real server (a list replace would be a forbidden Pod update).
    let again = pods.patch("p", &ssa, &Patch::Apply(&body)).await.unwrap();
    // (The kubelet writes the Pod's status meanwhile, so the generation, which only spec
    // changes move, is what shows that the apply itself changed nothing.)
    assert_eq!(again.metadata.generation, Some(1));
    body["spec"]["containers"][0]["image"] = json!("img:2");
    let changed = pods.patch("p", &ssa, &Patch::Apply(&body)).await.unwrap();
    let c0 = &changed.spec.as_ref().unwrap().containers[0];
    assert_eq!(c0.image.as_deref(), Some("img:2"));
    assert_eq!(c0.image_pull_policy.as_deref(), Some("IfNotPresent"));
    // Changing anything else in a Pod's spec is still refused.
    body["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1");
    assert_eq!(
        code(
            pods.patch("p", &ssa, &Patch::Apply(&body))
                .await
                .unwrap_err()
        ),
        422
    );
}

#[tokio::test]
async fn secrets_are_checked_and_a_pod_deadline_can_only_shrink() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let env = start(1).await;
    let c = env.client.clone();
    namespace(&c, "s1").await;
    let pp = PostParams::default();
    let secrets = Api::<Secret>::namespaced(c.clone(), "s1");
    let secret = |name: &str, ty: Option<&str>, key: &str, value: &[u8]| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: ty.map(str::to_string),
        data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
        ..Default::default()
    };
    let plain = secrets
        .create(&pp, &secret("plain", None, "k", b"v"))
        .await
        .unwrap();
    assert_eq!(plain.type_.as_deref(), Some("Opaque"), "defaulted");
    assert_eq!(plain.data.unwrap()["k"].0, b"v");
    let docker = "kubernetes.io/dockerconfigjson";
    let good = br#"{"auths":{"r:1":{"username":"u","password":"p"}}}"#;
    let pull = secrets
        .create(
            &pp,
            &secret("pull", Some(docker), ".dockerconfigjson", good),
        )
        .await
        .unwrap();
    assert_eq!(pull.type_.as_deref(), Some(docker));
    for (name, key, value) in [
        ("not-json", ".dockerconfigjson", &b"{nope"[..]),
        ("no-key", "config", &good[..]),
    ] {
        let e = secrets
            .create(&pp, &secret(name, Some(docker), key, value))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 422 && s.message.contains(".dockerconfigjson")),
            "{name}: {e:?}"
        );
    }
    // The type is immutable.
    let e = secrets
        .patch(
            "pull",
            &PatchParams::default(),
            &Patch::Merge(json!({"type": "Opaque"})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);

    // activeDeadlineSeconds may be lowered, never raised or removed (a renewal cannot move it).
    let pods = Api::<Pod>::namespaced(c.clone(), "s1");
    let mut p = pod("d1", None);
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(100);
    pods.create(&pp, &p).await.unwrap();
    let set =
        |secs: serde_json::Value| Patch::Merge(json!({"spec": {"activeDeadlineSeconds": secs}}));
    let lowered = pods
        .patch("d1", &PatchParams::default(), &set(json!(50)))
        .await
        .unwrap();
    assert_eq!(lowered.spec.unwrap().active_deadline_seconds, Some(50));
    for raised in [json!(200), json!(null)] {
        let e = pods
            .patch("d1", &PatchParams::default(), &set(raised.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 422 && s.message.contains("activeDeadlineSeconds")),
            "{raised}: {e:?}"
        );
    }
}
