//! One resource request: the verb from method, name and query, then the operation in ops.rs,
//! a list, a watch, or a Pod's log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::{error, json, logs, streamed, Body};
use crate::kinds::Kind;
use crate::ops::{self, PatchType};
use crate::selector::Selector;
use crate::state::Shared;
use crate::status::{ApiError, Result};
use crate::watch::{self, WatchRequest};

pub struct Call {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub method: Method,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub body: Bytes,
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("1" | "true"))
}

fn body_json(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

pub async fn dispatch(shared: Arc<Shared>, c: Call) -> http::Response<Body> {
    let q = &c.query;
    let selector = match Selector::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    if c.method == Method::GET && c.name.is_none() && flag(q, "watch") {
        let rv = match q
            .get("resourceVersion")
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>())
        {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                return error(&ApiError::bad_request("resourceVersion is not a number"))
            }
        };
        let req = WatchRequest {
            kind: c.kind,
            namespace: c.namespace.clone(),
            selector,
            resource_version: rv,
            timeout: q
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs),
            bookmarks: flag(q, "allowWatchBookmarks"),
            send_initial_events: flag(q, "sendInitialEvents"),
        };
        return streamed("application/json", watch::start(shared, req));
    }
    if c.method == Method::GET && c.sub.as_deref() == Some("log") && c.kind.plural == "pods" {
        return logs::serve(
            shared,
            c.namespace.unwrap_or_default(),
            c.name.unwrap_or_default(),
            c.query,
        )
        .await;
    }
    match run(&shared, &c, &selector) {
        Ok((code, v)) => json(code, &v),
        Err(e) => error(&e),
    }
}

fn run(shared: &Shared, c: &Call, selector: &Selector) -> Result<(u16, Value)> {
    let kind = c.kind;
    let ns = c.namespace.as_deref().unwrap_or("");
    // JSON only: a protobuf (or CBOR) body gets 415, on which kubectl retries in JSON.
    let media = c.content_type.split(';').next().unwrap_or("").trim();
    if matches!(c.method, Method::POST | Method::PUT)
        && !c.body.is_empty()
        && !media.is_empty()
        && media != "application/json"
    {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json (got {media:?})"),
        ));
    }
    if kind.namespaced && c.namespace.is_none() && c.method != Method::GET {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "a namespaced resource needs a namespace for writes",
        ));
    }
    let status_sub = match c.sub.as_deref() {
        None => false,
        Some("status") if kind.has_status => true,
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({other})"),
            ))
        }
    };
    let mut store = shared.store.lock().expect("store lock");
    let store = &mut *store;
    match (&c.method, c.name.as_deref()) {
        (&Method::GET, None) => {
            let items: Vec<Value> = store
                .list(kind, c.namespace.as_deref())
                .filter(|o| selector.matches(o))
                .cloned()
                .collect();
            Ok((
                200,
                json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": store.current_rv().to_string()}, "items": items}),
            ))
        }
        (&Method::GET, Some(name)) => Ok((200, ops::get(store, kind, ns, name)?)),
        (&Method::POST, None) if !status_sub => {
            Ok((201, ops::create(store, kind, ns, body_json(&c.body)?)?))
        }
        (&Method::PUT, Some(name)) => Ok((
            200,
            ops::replace(store, kind, ns, name, body_json(&c.body)?, status_sub)?,
        )),
        (&Method::PATCH, Some(name)) => {
            let ptype = match c.content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
                other => {
                    return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})")))
                }
            };
            let created = ptype == PatchType::Apply && store.get(kind, ns, name).is_none();
            let manager = c.query.get("fieldManager").map(String::as_str);
            let v = ops::patch(
                store,
                kind,
                ns,
                name,
                ptype,
                body_json(&c.body)?,
                manager,
                status_sub,
            )?;
            Ok((if created { 201 } else { 200 }, v))
        }
        (&Method::DELETE, Some(name)) if !status_sub => {
            let opts = body_json(&c.body)?;
            let grace = c
                .query
                .get("gracePeriodSeconds")
                .and_then(|s| s.parse().ok())
                .or(opts["gracePeriodSeconds"].as_i64());
            let v = ops::delete(store, kind, ns, name, grace, &opts["preconditions"])?;
            Ok((200, v))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{} is not supported here", c.method),
        )),
    }
}
