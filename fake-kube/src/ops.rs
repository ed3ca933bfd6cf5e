//! Create, replace, patch and delete with the API server's rules: server-owned metadata,
//! defaulting, 422 on invalid objects, 409 on existing names and stale resourceVersions, 404 as
//! a `Status`, graceful deletion for Pods and Namespaces.
//!
//! Functions here take the locked [`Store`]; they never block or wait.

use serde_json::{json, Value};

use crate::kinds::{self, Kind};
use crate::meta;
use crate::patch;
use crate::status::{self, ApiError, Result};
use crate::store::Store;
use crate::validate;

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Apply,
}

/// Checks the namespace a namespaced write goes to: it exists and is not being deleted.
fn check_namespace(store: &Store, kind: &Kind, ns: &str, name: &str) -> Result<()> {
    if !kind.namespaced {
        return Ok(());
    }
    let Some(nso) = store.get(kinds::namespaces(), "", ns) else {
        return Err(ApiError::not_found(kinds::namespaces(), ns));
    };
    if !nso["metadata"]["deletionTimestamp"].is_null() {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            kind.resource_ref()
        )));
    }
    Ok(())
}

fn check_body(kind: &Kind, ns: &str, body: &Value) -> Result<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    if let Some(k) = body["kind"].as_str() {
        if k != kind.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the body ({k}) is not {}",
                kind.kind
            )));
        }
    }
    let bns = meta::namespace(body);
    if kind.namespaced && !bns.is_empty() && bns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

pub fn create(store: &mut Store, kind: &'static Kind, ns: &str, mut obj: Value) -> Result<Value> {
    check_body(kind, ns, &obj)?;
    if meta::name(&obj).is_empty() {
        if let Some(g) = obj["metadata"]["generateName"].as_str() {
            obj["metadata"]["name"] = json!(format!("{g}{}", meta::random_suffix()));
        }
    }
    let name = meta::name(&obj).to_string();
    let problems = validate::problems(kind, &obj);
    if !problems.is_empty() {
        return Err(ApiError::invalid(kind, &name, &problems));
    }
    check_namespace(store, kind, ns, &name)?;
    if store.get(kind, ns, &name).is_some() {
        return Err(ApiError::already_exists(kind, &name));
    }

    obj["kind"] = json!(kind.kind);
    obj["apiVersion"] = json!(kind.api_version());
    let m = obj["metadata"]
        .as_object_mut()
        .expect("validated object has metadata");
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(server_owned);
    }
    m.insert("uid".into(), json!(meta::uid()));
    m.insert("creationTimestamp".into(), json!(meta::now()));
    if kind.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    if !obj["spec"].is_null() {
        obj["metadata"]["generation"] = json!(1);
    }
    match kind.plural {
        "pods" => validate::default_pod(&mut obj),
        "namespaces" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
    if kind.plural == "pods" {
        // Admission sees the defaulted Pod (requests copied from limits), as on a real server.
        crate::quota::admit(store, ns, &obj)?;
    }
    Ok(store.put(kind, ns, &name, obj))
}

pub fn get(store: &Store, kind: &'static Kind, ns: &str, name: &str) -> Result<Value> {
    store
        .get(kind, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(kind, name))
}

fn check_rv(kind: &Kind, name: &str, old: &Value, wanted: &Value) -> Result<()> {
    match wanted["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && rv != meta::rv(old) => Err(ApiError::conflict(kind, name)),
        _ => Ok(()),
    }
}

/// PUT: the whole object (or, for `/status`, its status) replaced.
pub fn replace(
    store: &mut Store,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    body: Value,
    status_sub: bool,
) -> Result<Value> {
    check_body(kind, ns, &body)?;
    let old = get(store, kind, ns, name)?;
    if meta::name(&body) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(&body)
        )));
    }
    check_rv(kind, name, &old, &body)?;
    finish_update(store, kind, ns, name, old, body, status_sub)
}

/// PATCH: merge (or apply) `body` onto the stored object; apply creates a missing object.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    store: &mut Store,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    ptype: PatchType,
    body: Value,
    manager: Option<&str>,
    status_sub: bool,
) -> Result<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the patch is not a JSON object"));
    }
    let managed = |obj: &mut Value, operation: &str| {
        let manager = manager.unwrap_or("unknown");
        let mut fields: Vec<Value> = obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // An existing entry stays as it is, so a repeated write that changes nothing else
        // keeps the resourceVersion (ownership itself is not tracked, see docs/kubernetes.md).
        if fields
            .iter()
            .any(|f| f["manager"] == json!(manager) && f["operation"] == json!(operation))
        {
            return;
        }
        fields.push(
            json!({"manager": manager, "operation": operation, "apiVersion": kind.api_version(),
            "time": meta::now(), "fieldsType": "FieldsV1", "fieldsV1": {}}),
        );
        obj["metadata"]["managedFields"] = Value::Array(fields);
    };
    if ptype == PatchType::Apply {
        if manager.is_none_or(str::is_empty) {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
        }
        if body["kind"].is_null() || body["apiVersion"].is_null() {
            return Err(ApiError::bad_request(
                "invalid object type: apply patches must name apiVersion and kind",
            ));
        }
        if store.get(kind, ns, name).is_none() && !status_sub {
            let mut obj = body;
            obj["metadata"]["name"] = json!(name);
            managed(&mut obj, "Apply");
            return create(store, kind, ns, obj);
        }
    }
    let old = get(store, kind, ns, name)?;
    check_rv(kind, name, &old, &body)?;
    let mut new = old.clone();
    patch::merge(&mut new, &body, ptype != PatchType::Apply);
    managed(
        &mut new,
        if ptype == PatchType::Apply {
            "Apply"
        } else {
            "Update"
        },
    );
    new["metadata"]["name"] = json!(name);
    finish_update(store, kind, ns, name, old, new, status_sub)
}

fn finish_update(
    store: &mut Store,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    old: Value,
    mut new: Value,
    status_sub: bool,
) -> Result<Value> {
    if status_sub {
        let status = new["status"].take();
        new = old.clone();
        new["status"] = status;
    } else if kind.has_status {
        match old.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    new["kind"] = json!(kind.kind);
    new["apiVersion"] = json!(kind.api_version());
    if new["metadata"]["managedFields"].is_null() && !old["metadata"]["managedFields"].is_null() {
        new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    }
    for kept in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generation",
    ] {
        match old["metadata"].get(kept) {
            Some(v) => new["metadata"][kept] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(kept);
                }
            }
        }
    }
    let mut problems = validate::problems(kind, &new);
    if kind.plural == "pods" && !status_sub {
        problems.extend(validate::pod_update_problem(&old, &new));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(kind, name, &problems));
    }
    if old["spec"] != new["spec"] {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if new == old {
        // A no-op write does not move the resourceVersion or wake watches, as on a real server.
        return Ok(old);
    }
    Ok(store.put(kind, ns, name, new))
}

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
