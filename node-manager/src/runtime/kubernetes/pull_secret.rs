//! The pull Secret of a slice namespace: the service's read-only pull credential for the
//! slice's pinned image (`SliverSpec::pull`), as a `kubernetes.io/dockerconfigjson` Secret the
//! slice's Pods name in `imagePullSecrets`, and the by-digest image reference they pull.
//! Pure builders. The credential opens that one image only, until the lease ends; it is never
//! logged, and it leaves with the namespace.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::names;
use crate::domain::SliverSpec;

/// Name of the pull Secret in every slice namespace.
pub const NAME: &str = "slicebed-pull";
/// Its type, as the kubelet reads it.
pub const TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Its one key.
pub const KEY: &str = ".dockerconfigjson";

/// The image reference a cluster pulls for `spec`: `<registry>/<repository>@sha256:…` when
/// the slice is pinned and a credential came with it (by digest, never by tag), else `None`.
pub fn image(spec: &SliverSpec) -> Option<String> {
    let p = spec.pull.as_ref()?;
    (!spec.image_digest.is_empty())
        .then(|| format!("{}/{}@{}", p.registry, p.repository, spec.image_digest))
}

/// The `.dockerconfigjson` document for `spec`'s credential.
pub fn docker_config(spec: &SliverSpec) -> Option<serde_json::Value> {
    let p = spec.pull.as_ref()?;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", p.username, p.password));
    Some(serde_json::json!({
        "auths": {
            p.registry.clone(): {
                "username": p.username,
                "password": p.password,
                "auth": auth,
            }
        }
    }))
}

/// The pull Secret of `spec`'s slice namespace on `node`, if it has a credential.
pub fn secret(node: &str, spec: &SliverSpec) -> Option<Secret> {
    image(spec)?;
    let doc = docker_config(spec)?;
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(NAME.to_string()),
            namespace: Some(names::namespace(&spec.slice, node)),
            labels: Some(names::namespace_labels(&spec.slice, node)),
            ..Default::default()
        },
        type_: Some(TYPE.to_string()),
        data: Some(BTreeMap::from([(
            KEY.to_string(),
            ByteString(doc.to_string().into_bytes()),
        )])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::domain::PullAccess;

    fn pinned() -> SliverSpec {
        let mut s = super::super::pod::tests::spec();
        s.image = "slicebed/store:abc".into();
        s.image_digest = format!("sha256:{}", "a".repeat(64));
        s.pull = Some(PullAccess {
            registry: "reg.example:5000".into(),
            repository: "alice/iperf".into(),
            username: "slicebed-pull".into(),
            password: "sbp_x.1.y".into(),
            expires_at: Some(SystemTime::UNIX_EPOCH),
        });
        s
    }

    #[test]
    fn a_pinned_sliver_pulls_by_digest_with_its_slice_secret() {
        let s = pinned();
        assert_eq!(
            image(&s).unwrap(),
            format!("reg.example:5000/alice/iperf@sha256:{}", "a".repeat(64))
        );
        let sec = serde_json::to_value(secret("k1", &s).unwrap()).unwrap();
        assert_eq!(sec["metadata"]["namespace"], "sb-web-k1");
        assert_eq!(sec["metadata"]["name"], NAME);
        assert_eq!(sec["type"], TYPE);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sec["data"][KEY].as_str().unwrap())
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let a = &doc["auths"]["reg.example:5000"];
        assert_eq!(a["username"], "slicebed-pull");
        assert_eq!(a["password"], "sbp_x.1.y");
        assert_eq!(
            a["auth"],
            base64::engine::general_purpose::STANDARD.encode("slicebed-pull:sbp_x.1.y")
        );
        // The password never shows in a debug print of the spec.
        assert!(!format!("{s:?}").contains("sbp_x.1.y"));
    }

    #[test]
    fn no_credential_or_no_pin_means_no_secret() {
        let mut s = pinned();
        s.image_digest.clear();
        assert!(image(&s).is_none() && secret("k1", &s).is_none());
        let mut s = pinned();
        s.pull = None;
        assert!(image(&s).is_none() && secret("k1", &s).is_none());
    }
}
