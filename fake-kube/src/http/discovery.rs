//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`) and `/version`, enough
//! for kubectl to find the served kinds. Only the kinds in kinds.rs are listed.

use serde_json::{json, Value};

use crate::kinds::KINDS;

fn resources(group: &str, version: &str) -> Value {
    let mut list = vec![];
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
        let short: &[&str] = match k.plural {
            "namespaces" => &["ns"],
            "nodes" => &["no"],
            "pods" => &["po"],
            "resourcequotas" => &["quota"],
            "limitranges" => &["limits"],
            "services" => &["svc"],
            "events" => &["ev"],
            "networkpolicies" => &["netpol"],
            _ => &[],
        };
        list.push(json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs, "shortNames": short}));
        if k.has_status {
            list.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.plural == "pods" {
            list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

/// The document at `path`, or None when there is none.
pub fn document(path: &str) -> Option<Value> {
    Some(match path {
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/api/v1" => resources("", "v1"),
        "/apis" => {
            let mut groups: Vec<&str> = KINDS
                .iter()
                .map(|k| k.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/version" => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-slicebed-fake-kube",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none",
            "compiler": "none", "platform": "linux/amd64"})
        }
        "/healthz" | "/livez" | "/readyz" => Value::String("ok".into()),
        p => {
            let (g, v) = p.strip_prefix("/apis/")?.split_once('/')?;
            if !KINDS.iter().any(|k| k.group == g && k.version == v) {
                return None;
            }
            resources(g, v)
        }
    })
}
