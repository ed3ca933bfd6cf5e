//! Shared by the node manager's tests against the real Docker engine: leaving nothing behind.
//! Each test binary uses what it needs of it.
#![allow(dead_code)]

use node_manager::runtime::docker::DockerRuntime;
use node_manager::runtime::Runtime;

/// Removes the node's containers, networks (and so its firewall rules) when dropped, also
/// when an assertion failed: a failed run leaves nothing on the shared engine and host.
pub struct Guard(pub DockerRuntime);

impl Drop for Guard {
    fn drop(&mut self) {
        let rt = self.0.clone();
        // A runtime of its own on a thread of its own: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(tokio) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            tokio.block_on(async {
                for c in rt.list().await.unwrap_or_default() {
                    let _ = rt.remove(&c.container_id).await;
                }
                for n in rt.list_networks().await.unwrap_or_default() {
                    let _ = rt.remove_network(&n).await;
                }
            });
        })
        .join();
    }
}

pub async fn cleanup(rt: &DockerRuntime) {
    for c in rt.list().await.unwrap() {
        rt.remove(&c.container_id).await.unwrap();
    }
    for n in rt.list_networks().await.unwrap() {
        rt.remove_network(&n).await.unwrap();
    }
}
