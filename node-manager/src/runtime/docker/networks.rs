//! Slice networks on the engine: one bridge network per slice per node, labelled with both,
//! created with a subnet from the node's pool (see [`crate::subnets`]) or the engine's own
//! pools, healed when a race left two, and removed by id.

use bollard::errors::Error as DockerError;
use bollard::models::NetworkCreateRequest;
use bollard::models::{Ipam, IpamConfig};
use bollard::query_parameters::ListNetworksOptions;

use super::connect::{engine, is_not_found};
use super::DockerRuntime;
use crate::runtime::{labels, Result, RuntimeError};
use crate::subnets::{self, Net, Pool};

/// Subnets tried per network creation before giving up (each refusal is another node
/// manager on the same engine taking the same subnet at the same moment).
const SUBNET_TRIES: usize = 16;

impl DockerRuntime {
    /// Creates the slice's network on this node unless it exists; heals duplicates.
    pub(super) async fn ensure_slice_network(&self, slice: &str) -> Result<()> {
        let name = labels::network_name(&self.node, slice);
        let _one_at_a_time = self.network_lock.lock().await;
        let existing = self.slice_networks(slice).await?;
        if existing.len() > 1 {
            // Docker's duplicate-name check is best effort: a create still in flight when an
            // agent was killed can race its successor's. Keep one network, drop the rest.
            self.dedupe_networks(&name, existing).await;
            return Ok(());
        }
        if !existing.is_empty() {
            return Ok(());
        }
        let opts = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".to_string()),
            labels: Some(labels::network_labels(&self.node, slice)),
            ..Default::default()
        };
        if let Some(pool) = self.pool {
            return self.create_pooled_network(pool, opts).await;
        }
        match self.docker.create_network(opts).await {
            Ok(_) => Ok(()),
            // Lost a race with ourselves (an earlier create that timed out): it exists, fine.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(format!("create network {name}"), e)),
        }
    }

    /// Removes every network of the slice on this node, duplicates included.
    pub(super) async fn remove_slice_networks(&self, slice: &str) -> Result<()> {
        // By id, so duplicates left by a race go too.
        for (id, _) in self.slice_networks(slice).await? {
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine(format!("remove network {id}"), e)),
            }
        }
        Ok(())
    }

    /// Slices that have a network on this node.
    pub(super) async fn slices_with_networks(&self) -> Result<Vec<String>> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(self.node_filters()),
            }))
            .await
            .map_err(|e| engine("list networks", e))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| n.labels?.get(labels::SLICE).cloned())
            .collect())
    }

    /// IPv4 subnets already in use: every network of the engine (any node's, or not
    /// Slicebed's at all) and every route of the host.
    async fn taken_subnets(&self) -> Result<Vec<Net>> {
        let nets = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| engine("list networks", e))?;
        let mut taken: Vec<Net> = nets
            .into_iter()
            .filter_map(|n| n.ipam?.config)
            .flatten()
            .filter_map(|c| c.subnet?.parse().ok())
            .collect();
        taken.extend(subnets::routes(
            &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
        ));
        Ok(taken)
    }

    /// Creates the slice network with a free subnet of the pool.
    async fn create_pooled_network(&self, pool: Pool, opts: NetworkCreateRequest) -> Result<()> {
        let name = opts.name.clone();
        let mut taken = self.taken_subnets().await?;
        let mut last = String::new();
        let mut refused = Vec::new();
        for _ in 0..SUBNET_TRIES {
            let Some(subnet) = pool.free(&taken).next() else {
                return Err(RuntimeError::Engine {
                    op: format!("create network {name}"),
                    message: format!(
                        "network pool {} is full: each of its {} slice networks overlaps a network of the engine or a route of the host (see --network-pool)",
                        pool.net(),
                        pool.capacity()
                    ),
                });
            };
            let mut opts = opts.clone();
            opts.ipam = Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    gateway: Some(subnet.gateway().to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            match self.docker.create_network(opts).await {
                Ok(_) => {
                    tracing::debug!(network = %name, %subnet, "created slice network");
                    return Ok(());
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => return Ok(()),
                // Taken in the meantime (another node manager on this engine): next one.
                Err(DockerError::DockerResponseServerError { message, .. })
                    if message.contains("overlap") =>
                {
                    tracing::debug!(network = %name, %subnet, %message, "subnet taken meanwhile");
                    last = message;
                    // Re-read, and keep every refused one: a network being created holds its
                    // subnet before it shows in the list.
                    refused.push(subnet);
                    taken = self.taken_subnets().await?;
                    taken.extend_from_slice(&refused);
                }
                Err(e) => return Err(engine(format!("create network {name}"), e)),
            }
        }
        Err(RuntimeError::Engine {
            op: format!("create network {name}"),
            message: format!(
                "every subnet tried was taken meanwhile ({SUBNET_TRIES} tries; last: {last})"
            ),
        })
    }

    /// This node's networks of one slice: (id, attached containers).
    async fn slice_networks(&self, slice: &str) -> Result<Vec<(String, usize)>> {
        let mut filters = self.node_filters();
        filters
            .entry("label".to_string())
            .or_default()
            .push(format!("{}={slice}", labels::SLICE));
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| engine("list networks", e))?;
        let mut out = Vec::new();
        for n in nets {
            let Some(id) = n.id else { continue };
            // The list does not fill in containers; inspect does.
            let attached = match self.docker.inspect_network(&id, None).await {
                Ok(full) => full.containers.map_or(0, |c| c.len()),
                Err(_) => 0,
            };
            out.push((id, attached));
        }
        Ok(out)
    }

    /// Keeps the network with the most containers and removes the others (best effort).
    async fn dedupe_networks(&self, name: &str, mut nets: Vec<(String, usize)>) {
        nets.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (id, _) in nets.into_iter().skip(1) {
            match self.docker.remove_network(&id).await {
                Ok(()) => tracing::warn!(network = %name, %id, "removed a duplicate slice network"),
                Err(e) => {
                    tracing::warn!(network = %name, %id, error = %e, "cannot remove a duplicate slice network")
                }
            }
        }
    }
}
