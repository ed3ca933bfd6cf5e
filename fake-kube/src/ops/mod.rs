//! Create, replace, patch and delete with the API server's rules: server-owned metadata,
//! defaulting, 422 on invalid objects, 409 on existing names and stale resourceVersions, 404 as
//! a `Status`, graceful deletion for Pods and Namespaces.
//!
//! Functions here take the locked [`Store`]; they never block or wait.

use serde_json::{json, Value};

use crate::kinds::{self, Kind};
use crate::meta;
use crate::status::{ApiError, Result};
use crate::store::Store;
use crate::validate;

mod delete;
mod update;

pub use delete::delete;
pub use update::{patch, replace};

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

pub(super) fn check_body(kind: &Kind, ns: &str, body: &Value) -> Result<()> {
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
        "secrets" if obj["type"].is_null() => obj["type"] = json!("Opaque"),
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
