//! A slice request in domain terms and its validation: every error names the field and value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{NamedPort, NodeLossPolicy, Placement, RestartPolicy};
use crate::names;
use slicebed_units::Resources;

/// Per-sliver resources when a request leaves them at zero.
const DEFAULT_RESOURCES: Resources = Resources::new(250, 256 << 20, 1 << 30);
/// Largest per-sliver request accepted at all.
const MAX_RESOURCES: Resources = Resources::new(64_000, 256 << 30, 1 << 40);
/// Most slivers in one slice.
const MAX_SLIVERS: u32 = 1000;
/// Most bytes of environment (names and values) in one slice: every read of the slice carries
/// it, so a few slices must never fill a response past what clients decode (4 MiB).
const MAX_ENV_BYTES: usize = 256 * 1024;

/// A validated-on-create slice request, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct SliceSpec {
    pub name: String,
    pub description: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub ports: Vec<NamedPort>,
    pub placement: Placement,
    pub lease: Option<Duration>,
    pub members: Vec<String>,
    pub restart_policy: RestartPolicy,
    pub node_loss: NodeLossPolicy,
    /// Grace period before re-placing slivers of a lost node (with `Replace`).
    pub replace_after: Option<Duration>,
}

/// A lease length in the largest whole unit ("14d", "2h", "90s").
pub(crate) fn days(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

impl SliceSpec {
    pub(crate) fn validate(&mut self, lease_max: Duration) -> Result<()> {
        names::dns_label("slice name", &self.name)?;
        names::text("description", &self.description, 1000)?;
        names::image(&self.image)?;
        if self.command.len() > 256
            || self.command.iter().map(String::len).sum::<usize>() > 64 * 1024
        {
            return Err(Error::invalid(
                "command is too long (at most 256 arguments, 64 KiB)",
            ));
        }
        if self.env.len() > 128 {
            return Err(Error::invalid("at most 128 environment variables"));
        }
        for (k, v) in &self.env {
            names::env_name(k)?;
            if v.len() > 32 * 1024 {
                return Err(Error::invalid(format!("env {k} is longer than 32 KiB")));
            }
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if env_bytes > MAX_ENV_BYTES {
            return Err(Error::invalid(format!(
                "env holds {env_bytes} bytes; at most {} KiB in all",
                MAX_ENV_BYTES / 1024
            )));
        }
        let r = &mut self.resources;
        for (field, v, max) in [
            ("cpu", r.cpu_millis, MAX_RESOURCES.cpu_millis),
            ("memory", r.memory_bytes, MAX_RESOURCES.memory_bytes),
            ("disk", r.disk_bytes, MAX_RESOURCES.disk_bytes),
        ] {
            if v < 0 {
                return Err(Error::invalid(format!(
                    "{field} must not be negative (got {v})"
                )));
            }
            if v > max {
                return Err(Error::invalid(format!(
                    "{field} {v} exceeds the per-sliver maximum of {max}"
                )));
            }
        }
        if r.cpu_millis == 0 {
            r.cpu_millis = DEFAULT_RESOURCES.cpu_millis;
        }
        if r.memory_bytes == 0 {
            r.memory_bytes = DEFAULT_RESOURCES.memory_bytes;
        }
        if r.disk_bytes == 0 {
            r.disk_bytes = DEFAULT_RESOURCES.disk_bytes;
        }
        if r.memory_bytes < 4 << 20 {
            return Err(Error::invalid(format!(
                "memory {} bytes is below the minimum of 4Mi",
                r.memory_bytes
            )));
        }
        if self.ports.len() > 16 {
            return Err(Error::invalid("at most 16 ports per slice"));
        }
        let mut seen = BTreeSet::new();
        for p in &self.ports {
            names::dns_label("port name", &p.name)?;
            if p.container_port == 0 || p.container_port > 65535 {
                return Err(Error::invalid(format!(
                    "port {} has container port {} outside 1..65535",
                    p.name, p.container_port
                )));
            }
            if !seen.insert(p.name.clone()) {
                return Err(Error::invalid(format!(
                    "port name {} is used twice",
                    p.name
                )));
            }
        }
        let pl = &mut self.placement;
        match (pl.slivers, pl.per_site) {
            (0, 0) => {
                return Err(Error::invalid(
                    "placement needs a number of slivers or slivers per site",
                ))
            }
            (n, k) if n > 0 && k > 0 => {
                return Err(Error::invalid(format!(
                    "give either slivers ({n}) or per-site ({k}), not both"
                )))
            }
            (n, k) if n.max(k) > MAX_SLIVERS => {
                return Err(Error::invalid(format!(
                    "at most {MAX_SLIVERS} slivers per slice"
                )))
            }
            _ => {}
        }
        for s in &pl.sites {
            names::dns_label("site", s)?;
        }
        pl.sites.sort();
        pl.sites.dedup();
        if let Some(r) = self.replace_after {
            if r < Duration::from_secs(1) || r > Duration::from_secs(7 * 86_400) {
                return Err(Error::invalid("replace-after must be between 1s and 7d"));
            }
        }
        if let Some(l) = self.lease {
            if l.is_zero() {
                return Err(Error::invalid("lease must be positive"));
            }
            if l > lease_max {
                return Err(Error::invalid(format!(
                    "lease of {} exceeds the maximum of {}",
                    days(l),
                    days(lease_max)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    type Mutation = Box<dyn Fn(&mut SliceSpec)>;

    fn spec() -> SliceSpec {
        SliceSpec {
            name: "demo".into(),
            image: "slicebed/base:latest".into(),
            placement: Placement {
                slivers: 2,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_zero_resources() {
        let mut s = spec();
        s.validate(Duration::from_secs(86_400)).unwrap();
        assert_eq!(s.resources, DEFAULT_RESOURCES);
        assert_eq!(
            s.placement.strategy,
            crate::model::PlacementStrategy::Spread
        );
        assert_eq!(s.restart_policy, RestartPolicy::OnFailure);
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.name = "Bad_Name".into()), "slice name"),
            (Box::new(|s| s.resources.cpu_millis = -1), "cpu"),
            (Box::new(|s| s.resources.memory_bytes = 1 << 50), "memory"),
            (Box::new(|s| s.placement.slivers = 0), "placement"),
            (Box::new(|s| s.placement.per_site = 2), "not both"),
            (
                Box::new(|s| s.lease = Some(Duration::from_secs(3 * 86_400))),
                "exceeds the maximum",
            ),
            (
                Box::new(|s| {
                    s.env
                        .insert("1X".into(), "v".into())
                        .map(|_| ())
                        .unwrap_or(())
                }),
                "env name",
            ),
            (
                Box::new(|s| {
                    s.ports = vec![NamedPort {
                        name: "http".into(),
                        container_port: 0,
                    }]
                }),
                "container port",
            ),
            (Box::new(|s| s.image = String::new()), "image"),
            (
                Box::new(|s| {
                    for i in 0..100 {
                        s.env.insert(format!("V{i}"), "x".repeat(30_000));
                    }
                }),
                "env holds",
            ),
        ];
        for (mutate, needle) in cases {
            let mut s = spec();
            mutate(&mut s);
            let e = s
                .validate(Duration::from_secs(86_400))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        }
    }
}
