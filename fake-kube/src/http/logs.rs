//! `GET .../pods/NAME/log`: a simulated container's output (or, with `--docker-exec`, the
//! output of the Docker container behind it: [`super::docker_logs`]), whole or followed (`follow=true`)
//! until the container ends, with `container`, `tailLines` and `timestamps` as kubectl sends them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use super::{error, streamed, Body};
use crate::kinds;
use crate::ops;
use crate::state::Shared;
use crate::status::{ApiError, Result};

fn pick(
    shared: &Shared,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<(String, String)> {
    let store = shared.store.lock().expect("store lock");
    let pod = ops::get(&store, kinds::pods(), ns, name)?;
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match q.get("container") {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let sim = shared.sim.lock().expect("sim lock");
    if !sim.logs.contains_key(&(uid.clone(), container.clone())) {
        let reason = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"].as_str() == Some(&container))
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    Ok((uid, container))
}

fn render(lines: &[(String, String)], timestamps: bool) -> Bytes {
    let mut out = String::new();
    for (ts, l) in lines {
        if timestamps {
            out.push_str(ts);
            out.push(' ');
        }
        out.push_str(l);
        out.push('\n');
    }
    Bytes::from(out)
}

pub async fn serve(
    shared: Arc<Shared>,
    ns: String,
    name: String,
    q: HashMap<String, String>,
) -> Response<Body> {
    let key = match pick(&shared, &ns, &name, &q) {
        Ok(k) => k,
        Err(e) => return error(&e),
    };
    if shared.docker.is_some() {
        let spec = {
            let store = shared.store.lock().expect("store lock");
            let pod = match ops::get(&store, kinds::pods(), &ns, &name) {
                Ok(p) => p,
                Err(e) => return error(&e),
            };
            let c = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"].as_str() == Some(&key.1))
                .cloned()
                .unwrap_or_default();
            crate::exec::docker::Spec::of(&pod, &c)
        };
        return super::docker_logs::serve(shared, spec, key, q).await;
    }
    let timestamps = q.get("timestamps").is_some_and(|v| v == "true" || v == "1");
    let follow = q.get("follow").is_some_and(|v| v == "true" || v == "1");
    let mut sent = {
        let sim = shared.sim.lock().expect("sim lock");
        let n = sim.logs[&key].lines.len();
        let tail = q
            .get("tailLines")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(n);
        n - tail.min(n)
    };
    if !follow {
        let sim = shared.sim.lock().expect("sim lock");
        let body = render(&sim.logs[&key].lines[sent..], timestamps);
        return Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(body).boxed_unsync())
            .expect("static response parts are valid");
    }
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut woken = shared.log_written.subscribe();
        loop {
            let (chunk, closed) = {
                let sim = shared.sim.lock().expect("sim lock");
                let buf = &sim.logs[&key];
                let chunk = render(&buf.lines[sent..], timestamps);
                sent = buf.lines.len();
                (chunk, buf.closed)
            };
            if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                return;
            }
            if closed {
                return;
            }
            if woken.recv().await.is_err() {
                woken = shared.log_written.subscribe();
            }
        }
    });
    streamed("text/plain", rx)
}
