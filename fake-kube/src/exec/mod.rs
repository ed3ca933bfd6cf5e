//! `.../pods/NAME/exec` over websockets with the `v5.channel.k8s.io` / `v4.channel.k8s.io`
//! subprotocols kube and kubectl speak: channel 0 stdin, 1 stdout, 2 stderr, 3 the final `Status`
//! (exit code), 255 (v5) closing stdin.
//!
//! The command runs with `docker exec` in the container [`docker::Docker`] keeps for the Pod —
//! a real process in a real container of the Pod's image, never on the host. Exec is off unless
//! the fake was started with it (`Config::docker_exec`). `tty=true` is accepted but no terminal
//! is allocated, and resize messages (channel 4) are ignored.

pub mod docker;
mod session;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::http::{error, Body};
use crate::kinds;
use crate::kubelet::sim::Stage;
use crate::ops;
use crate::state::Shared;
use crate::status::{ApiError, Result};

struct Params {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
}

fn params(raw_query: &str) -> Params {
    let mut p = Params {
        command: vec![],
        container: None,
        stdin: false,
    };
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "command" => p.command.push(v.into_owned()),
            "container" => p.container = Some(v.into_owned()),
            "stdin" => p.stdin = v == "true" || v == "1",
            _ => {}
        }
    }
    p
}

/// The Pod's container to exec into, checked to be running.
fn target(shared: &Shared, ns: &str, name: &str, p: &Params) -> Result<docker::Spec> {
    let store = shared.store.lock().expect("store lock");
    let pod = ops::get(&store, kinds::pods(), ns, name)?;
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c = match &p.container {
        Some(want) => containers.iter().find(|c| c["name"].as_str() == Some(want)),
        None if containers.len() == 1 => containers.first(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            )))
        }
    };
    let Some(c) = c else {
        let want = p.container.clone().unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "container {want} is not valid for pod {name}"
        )));
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let running = matches!(
        shared
            .sim
            .lock()
            .expect("sim lock")
            .pods
            .get(&uid)
            .map(|s| &s.stage),
        Some(Stage::Running { .. })
    );
    if !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{}\")",
            c["name"].as_str().unwrap_or("")
        )));
    }
    Ok(docker::Spec::of(&pod, c))
}

pub async fn serve(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    ns: String,
    name: String,
) -> Response<Body> {
    let Some(dock) = shared.docker.clone() else {
        return error(&ApiError::bad_request(
            "exec is not enabled on this fake API server (start it with --docker-exec / Config::docker_exec)",
        ));
    };
    let p = params(req.uri().query().unwrap_or(""));
    if p.command.is_empty() {
        return error(&ApiError::bad_request(
            "you must specify at least 1 command",
        ));
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let key = header("sec-websocket-key");
    if !header("upgrade").eq_ignore_ascii_case("websocket") || key.is_empty() {
        return error(&ApiError::bad_request("exec needs a websocket upgrade"));
    }
    let offered = header("sec-websocket-protocol");
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.contains(p))
    else {
        return error(&ApiError::bad_request(
            "exec needs the v5.channel.k8s.io or v4.channel.k8s.io subprotocol",
        ));
    };
    let spec = match target(&shared, &ns, &name, &p) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let container = match dock.container_for(&spec).await {
        Ok(c) => c,
        Err(m) => return error(&ApiError::new(500, "InternalError", m)),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session::run(ws, container, p).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", protocol)
        .body(Empty::new().map_err(|e| match e {}).boxed_unsync())
        .expect("static response parts are valid")
}
