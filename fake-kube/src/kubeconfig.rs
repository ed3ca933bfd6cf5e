//! The kubeconfig a client needs to reach the fake: server URL, CA (when serving TLS) and the
//! bearer token. Written as JSON, which kubectl and kube read like YAML.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use serde_json::json;

pub fn render(server: &str, ca_pem: Option<&str>, token: &str) -> String {
    let mut cluster = json!({"server": server});
    if let Some(pem) = ca_pem {
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake-kube", "cluster": cluster}],
        "users": [{"name": "fake-kube-admin", "user": {"token": token}}],
        "contexts": [{"name": "fake-kube", "context": {"cluster": "fake-kube", "user": "fake-kube-admin", "namespace": "default"}}],
        "current-context": "fake-kube",
        "preferences": {},
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
}

/// Writes the kubeconfig (mode 0600: it holds the token), replacing any file there.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
