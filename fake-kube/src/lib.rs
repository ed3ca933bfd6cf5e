//! A small, stateful fake Kubernetes API server for Slicebed's tests: real HTTP(S) on a loopback
//! port, bearer-token auth, core/v1 Namespaces, Nodes, Pods, ResourceQuotas, LimitRanges,
//! Services, Events and networking.k8s.io/v1 NetworkPolicies, list and watch with one global
//! resourceVersion, and a simulated kubelet that moves Pods through their phases.
//!
//! Clients reach it through the kubeconfig it writes, with no special code: kube's `Config` and
//! kubectl read it like any cluster's. It is a test double and must never be mistaken for a
//! cluster: no scheduler beyond binding, no admission, no real containers (docs/kubernetes.md).

mod exec;
mod hooks;
mod http;
mod kinds;
mod kubeconfig;
mod kubelet;
mod meta;
mod node;
mod ops;
mod patch;
mod quota;
mod router;
mod selector;
mod state;
mod status;
mod store;
mod tls;
mod validate;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch as tokio_watch};
use tokio::task::JoinHandle;

pub use kubelet::sim::{Behaviour, ANNOTATION as BEHAVIOUR_ANNOTATION};
pub use node::NodeConfig;
pub use state::Timings;

use state::Shared;

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve HTTPS with a fresh CA (written into the kubeconfig); plain HTTP otherwise.
    pub tls: bool,
    /// The bearer token clients must present; a random one when None.
    pub token: Option<String>,
    pub nodes: Vec<NodeConfig>,
    /// How many changes watches can resume from before they get 410 Gone.
    pub history: usize,
    pub timings: Timings,
    /// Serve `pods/exec` by running the command with `docker exec` in a container the fake
    /// starts from the Pod's image on its first exec (needs a Docker engine and the image).
    pub docker_exec: bool,
}

impl Config {
    /// HTTPS on 127.0.0.1, a random token, and `n` nodes named `fake-node-1`…
    pub fn with_nodes(n: usize) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            token: None,
            nodes: (1..=n)
                .map(|i| NodeConfig::new(&format!("fake-node-{i}")))
                .collect(),
            history: 1000,
            timings: Timings::default(),
            docker_exec: false,
        }
    }
}

/// A running fake API server; dropping it stops the server and its kubelet.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.closing.send_modify(|g| *g += 1);
        if let Some(d) = &self.shared.docker {
            d.remove_all_blocking();
        }
    }
}

impl FakeKube {
    pub async fn start(config: Config) -> anyhow::Result<FakeKube> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tls = if config.tls {
            Some(tls::generate(addr.ip())?)
        } else {
            None
        };
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(config.history.max(1))),
            sim: Mutex::new(Default::default()),
            token,
            timings: config.timings.clone(),
            closing: tokio_watch::channel(0).0,
            log_written: broadcast::channel(16).0,
            behaviours: Mutex::new(HashMap::new()),
            docker: config
                .docker_exec
                .then(|| Arc::new(exec::docker::Docker::new())),
        });
        let mut fake = FakeKube {
            shared: shared.clone(),
            addr,
            ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
            tasks: vec![],
        };
        fake.create(
            "namespaces",
            "",
            serde_json::json!({"metadata": {"name": "default"}}),
        )?;
        for n in &config.nodes {
            fake.add_node(n)?;
        }
        let acceptor = tls.map(|t| t.acceptor);
        fake.tasks = vec![
            tokio::spawn(http::serve(listener, shared.clone(), acceptor)),
            tokio::spawn(kubelet::run(shared)),
        ];
        Ok(fake)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or http:// without TLS).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.ca_pem.is_some() {
                "https"
            } else {
                "http"
            },
            self.addr
        )
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The CA that signed the server certificate, PEM (None without TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The kubeconfig text that reaches this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(&self.url(), self.ca_pem(), self.token())
    }

    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        kubeconfig::write(path, &self.kubeconfig())
    }
}

/// Labels as given on the command line (`k=v`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("label {s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}
