//! Validation (422 Invalid) and defaulting of incoming objects, for the fields Slicebed writes.
//!
//! Far from the API server's full validation: it checks what a client could get wrong that would
//! make a real cluster refuse the object (names, required fields, requests above limits, Pod
//! spec changes a real server forbids), so such a mistake fails here too.

use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::meta;

/// Every problem found in `obj` (empty when valid), as `field: message`.
pub fn problems(kind: &Kind, obj: &Value) -> Vec<String> {
    let mut out = vec![];
    let name = meta::name(obj);
    let name_ok = if kind.plural == "namespaces" {
        meta::is_dns_label(name)
    } else {
        meta::is_dns_subdomain(name)
    };
    if name.is_empty() {
        out.push("metadata.name: Required value: name or generateName is required".into());
    } else if !name_ok {
        out.push(format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'"));
    }
    let spec = &obj["spec"];
    match kind.plural {
        "pods" => pod_problems(spec, &mut out),
        "networkpolicies" if !spec["podSelector"].is_object() => {
            out.push("spec.podSelector: Required value".into())
        }
        "limitranges" if !spec["limits"].is_array() => {
            out.push("spec.limits: Required value".into())
        }
        "secrets" => secret_problems(obj, &mut out),
        _ => {}
    }
    out
}

/// A real server checks that `data` values are base64 and, for the typed secrets Slicebed
/// writes (`kubernetes.io/dockerconfigjson`), that the required key holds valid JSON.
fn secret_problems(obj: &Value, out: &mut Vec<String>) {
    use base64::Engine;
    let decode = |v: &Value| {
        v.as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    };
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            if decode(v).is_none() {
                out.push(format!("data[{k}]: Invalid value: illegal base64 data"));
            }
        }
    }
    if obj["type"].as_str() == Some("kubernetes.io/dockerconfigjson") {
        const KEY: &str = ".dockerconfigjson";
        match obj["data"].get(KEY).and_then(decode) {
            None => out.push(format!("data[{KEY}]: Required value")),
            Some(b) if serde_json::from_slice::<Value>(&b).is_err() => {
                out.push(format!("data[{KEY}]: Invalid value: \"<secret contents redacted>\": invalid character in JSON"))
            }
            Some(_) => {}
        }
    }
}

/// A Secret's `type` defaults to Opaque and cannot change afterwards.
pub fn secret_update_problem(old: &Value, new: &Value) -> Option<String> {
    (old["type"] != new["type"]).then(|| "type: Invalid value: field is immutable".to_string())
}

fn pod_problems(spec: &Value, out: &mut Vec<String>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        out.push("spec.containers: Required value".into());
    }
    let mut names = vec![];
    for (i, c) in containers.iter().enumerate() {
        let name = c["name"].as_str().unwrap_or("");
        if !meta::is_dns_label(name) {
            out.push(format!(
                "spec.containers[{i}].name: Invalid value: \"{name}\""
            ));
        } else if names.contains(&name) {
            out.push(format!(
                "spec.containers[{i}].name: Duplicate value: \"{name}\""
            ));
        }
        names.push(name);
        if c["image"].as_str().unwrap_or("").trim().is_empty() {
            out.push(format!("spec.containers[{i}].image: Required value"));
        }
        for res in ["cpu", "memory"] {
            let req = quantity(&c["resources"]["requests"][res], res);
            let lim = quantity(&c["resources"]["limits"][res], res);
            if let (Some(r), Some(l)) = (req, lim) {
                if r > l {
                    out.push(format!(
                        "spec.containers[{i}].resources.requests: Invalid value: \"{}\": must be less than or equal to {res} limit of {}",
                        c["resources"]["requests"][res].as_str().unwrap_or(""),
                        c["resources"]["limits"][res].as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    if let Some(p) = spec["restartPolicy"].as_str() {
        if !["Always", "OnFailure", "Never"].contains(&p) {
            out.push(format!("spec.restartPolicy: Unsupported value: \"{p}\""));
        }
    }
}

/// A quantity in millicores (cpu) or bytes (anything else); None when absent or unreadable.
pub fn quantity(v: &Value, res: &str) -> Option<i64> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if res == "cpu" {
        slicebed_units::parse_cpu(&s).ok()
    } else {
        slicebed_units::parse_size(&s)
            .ok()
            .or_else(|| s.parse().ok())
    }
}

/// Pod defaults the API server writes on create: restart policy, grace period, requests from
/// limits, pull policy, and the initial status with its QoS class.
pub fn default_pod(pod: &mut Value) {
    let spec = &mut pod["spec"];
    if spec["restartPolicy"].is_null() {
        spec["restartPolicy"] = json!("Always");
    }
    if spec["terminationGracePeriodSeconds"].is_null() {
        spec["terminationGracePeriodSeconds"] = json!(30);
    }
    if spec["schedulerName"].is_null() {
        spec["schedulerName"] = json!("default-scheduler");
    }
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            let image = c["image"].as_str().unwrap_or("").to_string();
            if c["imagePullPolicy"].is_null() {
                let latest = image.ends_with(":latest")
                    || !image.rsplit('/').next().unwrap_or("").contains(':');
                c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
            }
            let limits = c["resources"]["limits"].clone();
            if let Some(l) = limits.as_object() {
                for (k, v) in l {
                    if c["resources"]["requests"][k].is_null() {
                        c["resources"]["requests"][k] = v.clone();
                    }
                }
            }
        }
    }
    let qos = qos_class(&pod["spec"]);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// Guaranteed when every container's cpu and memory limits are set and equal to its requests;
/// BestEffort when no container asks for anything; Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let cs = spec["containers"].as_array().cloned().unwrap_or_default();
    let none = cs.iter().all(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && c["resources"]["limits"]
                .as_object()
                .is_none_or(|m| m.is_empty())
    });
    if none {
        return "BestEffort";
    }
    let guaranteed = cs.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = quantity(&c["resources"]["limits"][r], r);
            l.is_some() && l == quantity(&c["resources"]["requests"][r], r)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A real server lets an update change only a Pod's images, activeDeadlineSeconds and
/// tolerations; anything else is 422.
pub fn pod_update_problem(old: &Value, new: &Value) -> Option<String> {
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("tolerations");
        }
        if let Some(cs) = s["containers"].as_array_mut() {
            for c in cs {
                if let Some(o) = c.as_object_mut() {
                    o.remove("image");
                }
            }
        }
        s
    };
    if let (Some(o), n) = (
        old["spec"]["activeDeadlineSeconds"].as_i64(),
        new["spec"]["activeDeadlineSeconds"].as_i64(),
    ) {
        // It may be set or lowered, never raised nor removed.
        if n.is_none_or(|n| n > o) {
            return Some(format!(
                "spec.activeDeadlineSeconds: Invalid value: {}: must be less than or equal to previous value",
                n.map_or("null".to_string(), |n| n.to_string())
            ));
        }
    }
    (strip(&old["spec"]) != strip(&new["spec"])).then(|| {
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
         `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)"
            .to_string()
    })
}
