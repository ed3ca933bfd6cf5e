//! Harness for black-box tests: real `slice-service` and `node-manager` processes, real gRPC
//! over loopback sockets, real SQLite files or a real PostgreSQL server.
//!
//! The database is chosen by `SLICEBED_TEST_POSTGRES` (a `postgres://` URL of a server where
//! the user may create databases); unset means SQLite. Every service gets a fresh database.

pub mod cdp;
pub mod client;
pub mod engine;
pub mod kube;
pub mod nm;
pub mod node;
pub mod proxy;
pub mod service;

pub use client::Clients;
pub use node::TestNode;
pub use service::Service;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Directory holding the workspace's binaries (`target/debug` next to the test executable).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SLICEBED_BIN_DIR") {
        return d.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// Path of a workspace binary; panics with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first (scripts/test does)",
        p.display()
    );
    p
}

/// Polls `f` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
