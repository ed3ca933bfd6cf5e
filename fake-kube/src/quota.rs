//! ResourceQuota admission and status, as the API server's quota admission and the quota
//! controller do it for the resources Slicebed sets: `pods`, `requests.cpu`,
//! `requests.memory`, `limits.cpu`, `limits.memory` (and `cpu`/`memory` as requests).
//!
//! A Pod that would take its namespace past a hard limit is refused with 403 "exceeded quota";
//! a Pod that leaves a quota-covered resource unset is refused as a real server refuses it.

use serde_json::{json, Map, Value};

use crate::kinds::{self, Kind};
use crate::meta;
use crate::status::{ApiError, Result};
use crate::store::Store;
use crate::validate::quantity;

const TRACKED: &[&str] = &[
    "pods",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
];

fn quotas() -> &'static Kind {
    kinds::by_plural("resourcequotas").expect("resourcequotas are served")
}

/// What one Pod counts for `key` (millicores, bytes, or 1 Pod); None when the Pod leaves a
/// needed field unset.
fn usage(pod: &Value, key: &str) -> Option<i64> {
    if key == "pods" {
        return Some(1);
    }
    let (section, res) = match key.split_once('.') {
        Some((s, r)) => (s, r),
        None => ("requests", key),
    };
    let mut sum = 0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        sum += quantity(&c["resources"][section][res], res)?;
    }
    Some(sum)
}

fn active(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

fn used(store: &Store, ns: &str, key: &str) -> i64 {
    store
        .list(kinds::pods(), Some(ns))
        .filter(|p| active(p))
        .filter_map(|p| usage(p, key))
        .sum()
}

fn show(key: &str, v: i64) -> String {
    if key.ends_with("cpu") {
        format!("{v}m")
    } else {
        v.to_string()
    }
}

/// Admits (or refuses) a new Pod against every quota in its namespace.
pub fn admit(store: &Store, ns: &str, pod: &Value) -> Result<()> {
    let name = meta::name(pod);
    for q in store.list(quotas(), Some(ns)) {
        let qname = meta::name(q);
        let hard = q["spec"]["hard"].as_object().cloned().unwrap_or_default();
        for (key, limit) in hard.iter().filter(|(k, _)| TRACKED.contains(&k.as_str())) {
            let res = key.rsplit('.').next().unwrap_or(key);
            let limit = if key == "pods" {
                limit.as_str().and_then(|s| s.parse().ok())
            } else {
                quantity(limit, res)
            };
            let Some(limit) = limit else { continue };
            let Some(want) = usage(pod, key) else {
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: failed quota: {qname}: must specify {key}"
                )));
            };
            let now = used(store, ns, key);
            if now + want > limit {
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: exceeded quota: {qname}, requested: {key}={}, used: {key}={}, limited: {key}={}",
                    show(key, want),
                    show(key, now),
                    show(key, limit)
                )));
            }
        }
    }
    Ok(())
}

/// Writes `status.hard` and `status.used` of every quota whose figures changed.
pub fn reconcile(store: &mut Store) {
    let all: Vec<Value> = store.list(quotas(), None).cloned().collect();
    for q in all {
        let ns = meta::namespace(&q).to_string();
        let hard = q["spec"]["hard"].clone();
        let mut used_map = Map::new();
        for key in hard
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| TRACKED.contains(&k.as_str()))
        {
            let v = used(store, &ns, key);
            used_map.insert(
                key.clone(),
                json!(if key == "pods" {
                    v.to_string()
                } else {
                    show(key, v)
                }),
            );
        }
        let status = json!({"hard": hard, "used": used_map});
        if q["status"] != status {
            let mut new = q.clone();
            new["status"] = status;
            store.put(quotas(), &ns, meta::name(&q), new);
        }
    }
}
