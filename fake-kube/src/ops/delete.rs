//! DELETE with preconditions; graceful for bound Pods and Namespaces (finished by the kubelet
//! and the namespace controller), immediate for everything else.

use serde_json::{json, Value};

use super::get;
use crate::kinds::Kind;
use crate::meta;
use crate::status::{self, ApiError, Result};
use crate::store::Store;

/// DELETE. Pods bound to a node and Namespaces are deleted gracefully (the object stays, with
/// `deletionTimestamp`, until the kubelet or the namespace controller finishes); everything else
/// goes at once and the answer is a `Status` Success.
pub fn delete(
    store: &mut Store,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    grace: Option<i64>,
    preconditions: &Value,
) -> Result<Value> {
    let old = get(store, kind, ns, name)?;
    if let Some(rv) = preconditions["resourceVersion"].as_str() {
        if rv != meta::rv(&old) {
            return Err(ApiError::conflict(kind, name));
        }
    }
    if let Some(uid) = preconditions["uid"].as_str() {
        if uid != old["metadata"]["uid"].as_str().unwrap_or("") {
            return Err(ApiError::conflict(kind, name));
        }
    }
    let graceful = match kind.plural {
        "namespaces" => true,
        "pods" => {
            let bound = old["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let grace = grace
                .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            bound && grace > 0
        }
        _ => false,
    };
    if !graceful {
        let gone = store
            .remove(kind, ns, name)
            .expect("object read above under the same lock");
        return Ok(status::success(
            kind,
            name,
            gone["metadata"]["uid"].as_str().unwrap_or(""),
        ));
    }
    let mut new = old.clone();
    if new["metadata"]["deletionTimestamp"].is_null() {
        let grace = grace
            .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(grace);
        new["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(at));
        new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        if kind.plural == "namespaces" {
            new["status"]["phase"] = json!("Terminating");
        }
        return Ok(store.put(kind, ns, name, new));
    }
    Ok(old)
}
