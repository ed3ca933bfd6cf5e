//! Slice networks on the engine: one bridge network per slice per node, labelled with both,
//! created with a subnet from the node's pool (see [`crate::subnets`]) or the engine's own
//! pools, healed when a race left two, and removed by id. Each one gets its firewall rules
//! (see [`super::firewall`]) before any sliver joins it, and loses them with it; listing the
//! networks reconciles the rules with them (a crash between the two leaves nothing behind).

use std::collections::{BTreeSet, HashMap};

use bollard::errors::Error as DockerError;
use bollard::models::NetworkCreateRequest;
use bollard::models::{Ipam, IpamConfig};
use bollard::query_parameters::ListNetworksOptions;

use super::connect::{engine, is_not_found};
use super::firewall::Firewall;
use super::DockerRuntime;
use crate::runtime::{labels, Result, RuntimeError};
use crate::subnets::{self, Net, Pool};

/// Subnets tried per network creation before giving up (each refusal is another node
/// manager on the same engine taking the same subnet at the same moment).
const SUBNET_TRIES: usize = 16;

/// Docker's option naming a bridge network's interface on the host.
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// The host interface of a bridge network: its option, else Docker's `br-` + 12 of the id.
fn bridge_name(id: &str, options: Option<&HashMap<String, String>>) -> String {
    options
        .and_then(|o| o.get(BRIDGE_NAME))
        .cloned()
        .unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(id)))
}

impl DockerRuntime {
    /// Creates the slice's network on this node unless it exists, heals duplicates, and
    /// installs its firewall rules. Refuses before creating anything when the node cannot
    /// isolate slices and running unisolated was not allowed.
    pub(super) async fn ensure_slice_network(&self, slice: &str) -> Result<()> {
        let fw = self.firewall().await?;
        self.ensure_bridge(slice).await?;
        match fw {
            Some(fw) => self.isolate(fw, slice).await,
            None => Ok(()),
        }
    }

    /// Makes sure the slice's existing network has its firewall rules (before a sliver
    /// joins it: the rules are the engine's and iptables' truth, not this process's memory).
    pub(super) async fn isolate_slice(&self, slice: &str) -> Result<()> {
        match self.firewall().await? {
            Some(fw) => self.isolate(fw, slice).await,
            None => Ok(()),
        }
    }

    async fn isolate(&self, fw: &Firewall, slice: &str) -> Result<()> {
        let bridges: Vec<String> = self
            .slice_networks(slice)
            .await?
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        fw.ensure(slice, &bridges)
            .await
            .map_err(|e| RuntimeError::Engine {
                op: format!(
                    "isolate slice network {}",
                    labels::network_name(&self.node, slice)
                ),
                message: e.0,
            })
    }

    /// Creates the slice's network on this node unless it exists; heals duplicates.
    async fn ensure_bridge(&self, slice: &str) -> Result<()> {
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
        for n in self.slice_networks(slice).await? {
            match self.docker.remove_network(&n.id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine(format!("remove network {}", n.id), e)),
            }
        }
        // Without iptables there are no rules to remove.
        if let Ok(fw) = self.probe_firewall().await {
            fw.remove(slice).await.map_err(|e| RuntimeError::Engine {
                op: format!(
                    "remove the firewall rules of {}",
                    labels::network_name(&self.node, slice)
                ),
                message: e.0,
            })?;
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
        let mut slices = Vec::new();
        let mut bridges = BTreeSet::new();
        for n in nets {
            let Some(slice) = n.labels.as_ref().and_then(|l| l.get(labels::SLICE)) else {
                continue;
            };
            if let Some(id) = &n.id {
                bridges.insert((slice.clone(), bridge_name(id, n.options.as_ref())));
            }
            slices.push(slice.clone());
        }
        // Every pass lists the networks: rules of networks that vanished while no agent ran
        // go, and rules someone deleted come back.
        if let Ok(fw) = self.probe_firewall().await {
            if let Err(e) = fw.sync(&bridges).await {
                tracing::warn!(error = %e, "cannot reconcile the slice firewall rules");
            }
        }
        Ok(slices)
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

    /// This node's networks of one slice.
    async fn slice_networks(&self, slice: &str) -> Result<Vec<SliceNetwork>> {
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
            let bridge = bridge_name(&id, n.options.as_ref());
            out.push(SliceNetwork {
                id,
                attached,
                bridge,
            });
        }
        Ok(out)
    }

    /// Keeps the network with the most containers and removes the others (best effort).
    async fn dedupe_networks(&self, name: &str, mut nets: Vec<SliceNetwork>) {
        nets.sort_by(|a, b| b.attached.cmp(&a.attached).then(a.id.cmp(&b.id)));
        for SliceNetwork { id, .. } in nets.into_iter().skip(1) {
            match self.docker.remove_network(&id).await {
                Ok(()) => tracing::warn!(network = %name, %id, "removed a duplicate slice network"),
                Err(e) => {
                    tracing::warn!(network = %name, %id, error = %e, "cannot remove a duplicate slice network")
                }
            }
        }
    }
}

/// One network of a slice on this node.
struct SliceNetwork {
    id: String,
    /// Containers attached to it.
    attached: usize,
    /// Its interface on the host.
    bridge: String,
}
