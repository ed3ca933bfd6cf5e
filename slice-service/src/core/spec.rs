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
/// Most members of one slice, sites to place on and node labels asked for: every read of the
/// slice carries them too, so they are bounded like the environment.
const MAX_MEMBERS: usize = 128;
const MAX_PLACEMENT_SITES: usize = 1000;
const MAX_NODE_LABELS: usize = 64;

/// A validated-on-create slice request, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct SliceSpec {
    pub name: String,
    pub description: String,
    pub image: String,
    /// What `image` resolved to in the image store (set by the core at creation, never taken
    /// from the request).
    pub image_digest: String,
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
        if pl.sites.len() > MAX_PLACEMENT_SITES {
            return Err(Error::invalid(format!(
                "at most {MAX_PLACEMENT_SITES} sites in placement.sites"
            )));
        }
        pl.sites.sort();
        pl.sites.dedup();
        // The same rules as the labels of nodes (`LabelNode`): a selector that breaks them
        // could match no node anyway.
        if pl.node_labels.len() > MAX_NODE_LABELS {
            return Err(Error::invalid(format!(
                "at most {MAX_NODE_LABELS} node labels in placement"
            )));
        }
        for (k, v) in &pl.node_labels {
            let bad = |c: char| c.is_control() || c == '=' || c == ',';
            if k.is_empty() || k.len() > 63 || v.len() > 255 || k.contains(bad) || v.contains(bad) {
                return Err(Error::invalid(format!("node label {k:?} is invalid")));
            }
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(Error::invalid(format!(
                "at most {MAX_MEMBERS} members per slice"
            )));
        }
        for m in &self.members {
            names::dns_label("member", m)?;
        }
        let mut seen_members = BTreeSet::new();
        self.members.retain(|m| seen_members.insert(m.clone()));
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

/// Arbitrary slice specs: validation never panics, and whatever it accepts obeys the rules
/// (valid names, bounded sizes) and is accepted again unchanged.
#[cfg(test)]
mod prop_tests {
    use super::*;
    use crate::model::PlacementStrategy;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    const LEASE_MAX: Duration = Duration::from_secs(14 * 86_400);

    /// Mostly plausible text, sometimes anything, sometimes long.
    fn text(plausible: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            30 => proptest::string::string_regex(plausible).unwrap(),
            1 => any::<String>(),
            1 => (0usize..70_000).prop_map(|n| "x".repeat(n)),
        ]
    }

    fn quantity() -> impl Strategy<Value = i64> {
        prop_oneof![2 => Just(0i64), 6 => 1i64..1 << 32, 1 => any::<i64>()]
    }

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![4 => Just(0u32), 4 => 1u32..5, 1 => 990u32..1010, 1 => any::<u32>()]
    }

    fn duration() -> impl Strategy<Value = Option<Duration>> {
        prop_oneof![
            Just(None),
            (0u64..20 * 86_400).prop_map(|s| Some(Duration::from_secs(s))),
            any::<u64>().prop_map(|s| Some(Duration::from_secs(s))),
        ]
    }

    prop_compose! {
        fn spec()(
            name in text("[a-z][a-z0-9-]{0,70}"),
            description in text("[ -~\n]{0,50}"),
            image in text("[a-z/:.0-9]{1,40}"),
            command in vec(text("[ -~]{0,20}"), 0..4),
            env in btree_map(text("[A-Za-z_][A-Za-z0-9_]{0,12}"), text(".{0,40}"), 0..8),
            res in (quantity(), quantity(), quantity()),
            ports in prop_oneof![
                8 => vec((text("[a-z][a-z0-9]{0,8}"), 1u32..65_536), 0..4),
                1 => vec((text("[a-z][a-z0-9]{0,8}"), any::<u32>()), 0..18),
            ],
            counts in (count(), count()),
            sites in vec(text("[a-z]{1,6}"), 0..6),
            node_labels in prop_oneof![
                8 => btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..4),
                1 => btree_map(text("[a-z]{1,8}"), text("[a-z0-9=,]{0,8}"), 0..70),
            ],
            members in prop_oneof![
                8 => vec("[a-z]{1,6}", 0..6),
                1 => vec(text("[a-z]{1,6}"), 0..135),
            ],
            lease in duration(),
            replace_after in duration(),
        ) -> SliceSpec {
            SliceSpec {
                name,
                description,
                image,
                command,
                env,
                resources: Resources::new(res.0, res.1, res.2),
                ports: ports
                    .into_iter()
                    .map(|(name, container_port)| NamedPort { name, container_port })
                    .collect(),
                placement: Placement {
                    strategy: PlacementStrategy::Spread,
                    slivers: counts.0,
                    per_site: counts.1,
                    sites,
                    node_labels,
                    best_effort: false,
                },
                lease,
                members,
                replace_after,
                ..Default::default()
            }
        }
    }

    /// Bytes of everything a read of the slice carries from its spec.
    fn stored_bytes(s: &SliceSpec) -> usize {
        let strs = |v: &[String]| v.iter().map(String::len).sum::<usize>();
        s.name.len()
            + s.description.len()
            + s.image.len()
            + strs(&s.command)
            + s.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + s.ports.iter().map(|p| p.name.len() + 4).sum::<usize>()
            + strs(&s.placement.sites)
            + s.placement
                .node_labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + strs(&s.members)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn accepted_specs_obey_the_rules(mut s in spec()) {
            if s.validate(LEASE_MAX).is_err() {
                return Ok(());
            }
            prop_assert!(names::dns_label("n", &s.name).is_ok());
            prop_assert!(s.description.chars().count() <= 1000);
            prop_assert!(!s.description.chars().any(|c| c.is_control() && c != '\n'));
            prop_assert!(names::image(&s.image).is_ok());
            prop_assert!(s.env.len() <= 128);
            prop_assert!(s.env.keys().all(|k| names::env_name(k).is_ok()));
            let r = s.resources;
            prop_assert!(r.cpu_millis > 0 && r.cpu_millis <= MAX_RESOURCES.cpu_millis);
            prop_assert!(r.memory_bytes >= 4 << 20 && r.memory_bytes <= MAX_RESOURCES.memory_bytes);
            prop_assert!(r.disk_bytes > 0 && r.disk_bytes <= MAX_RESOURCES.disk_bytes);
            prop_assert!(s.ports.len() <= 16);
            let port_names: BTreeSet<_> = s.ports.iter().map(|p| &p.name).collect();
            prop_assert_eq!(port_names.len(), s.ports.len());
            for p in &s.ports {
                prop_assert!(names::dns_label("p", &p.name).is_ok());
                prop_assert!((1..=65535).contains(&p.container_port));
            }
            let pl = &s.placement;
            prop_assert!((pl.slivers == 0) != (pl.per_site == 0));
            prop_assert!(pl.slivers.max(pl.per_site) <= MAX_SLIVERS);
            prop_assert!(pl.sites.iter().all(|x| names::dns_label("s", x).is_ok()));
            prop_assert!(pl.sites.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
            prop_assert!(pl.node_labels.len() <= MAX_NODE_LABELS);
            prop_assert!(s.members.len() <= MAX_MEMBERS);
            prop_assert!(s.members.iter().all(|m| names::dns_label("m", m).is_ok()));
            prop_assert!(s.lease.is_none_or(|l| !l.is_zero() && l <= LEASE_MAX));
            let grace = Duration::from_secs(1)..=Duration::from_secs(7 * 86_400);
            prop_assert!(s.replace_after.is_none_or(|r| grace.contains(&r)));
            // Bounded: a few slices always fit in one 4 MiB response.
            prop_assert!(stored_bytes(&s) <= 512 * 1024, "{} bytes", stored_bytes(&s));
            // What was accepted is accepted again, unchanged.
            let again = s.clone();
            prop_assert!(s.validate(LEASE_MAX).is_ok());
            prop_assert_eq!(format!("{again:?}"), format!("{s:?}"));
        }
    }

    #[test]
    fn members_and_selectors_are_bounded() {
        let base = || SliceSpec {
            name: "demo".into(),
            image: "slicebed/base:latest".into(),
            placement: Placement {
                slivers: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut s = base();
        s.members = (0..200).map(|i| format!("u{i}")).collect();
        let e = s.validate(LEASE_MAX).unwrap_err().to_string();
        assert!(e.contains("members"), "{e}");
        let mut s = base();
        s.placement.node_labels = (0..100).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = s.validate(LEASE_MAX).unwrap_err().to_string();
        assert!(e.contains("node labels"), "{e}");
        let mut s = base();
        s.placement
            .node_labels
            .insert("gpu".into(), "x".repeat(10_000));
        let e = s.validate(LEASE_MAX).unwrap_err().to_string();
        assert!(e.contains("gpu"), "{e}");
        let mut s = base();
        s.members = vec!["bob".into(), "carol".into(), "bob".into()];
        s.validate(LEASE_MAX).unwrap();
        assert_eq!(s.members, ["bob", "carol"]);
    }
}
