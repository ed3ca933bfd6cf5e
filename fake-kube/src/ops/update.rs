//! replace (PUT) and patch (PATCH: merge, strategic as merge, server-side apply) of stored
//! objects: stale resourceVersions are 409, server-owned metadata and status survive, and a
//! write that changes nothing leaves the object (and its resourceVersion) alone.

use serde_json::{json, Value};

use super::{check_body, create, get, PatchType};
use crate::kinds::Kind;
use crate::meta;
use crate::patch;
use crate::status::{ApiError, Result};
use crate::store::Store;
use crate::validate;

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
    let mode = match ptype {
        PatchType::Merge => patch::Mode::Json,
        PatchType::Strategic => patch::Mode::Strategic,
        PatchType::Apply => patch::Mode::Apply,
    };
    patch::merge(&mut new, &body, mode);
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
    if kind.plural == "secrets" {
        if new["type"].is_null() {
            new["type"] = old["type"].clone();
        }
        problems.extend(validate::secret_update_problem(&old, &new));
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
