//! The fleet index: every node with what its slivers hold, every site with its quotas and
//! what its users' live slices hold, in memory.
//!
//! Placement reads it instead of the database, so a create costs what the request asks, not
//! what the fleet holds: per site, nodes are kept sorted by load, and `place` is handed only
//! the few least (spread) or most (pack) loaded nodes that can take a sliver. The index is
//! rebuilt from the database when the service starts and changed only after a commit, by the
//! code that committed; the database's own guards (`store::hold`) stay the last word, so a
//! stale index can cost a retry, never an overcommit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Node, Site, Sliver};
use crate::scheduler::{self, Candidate, Count, Request, Unavailable};
use crate::store::NodeHolding;

/// Below this many nodes `place` sees them all: exact and cheap enough.
const SMALL_FLEET: usize = 256;

/// Spread order: least loaded, then fewest slivers, then name (as `scheduler::pick`).
type SpreadKey = (u64, u32, String);
/// Pack order: most loaded, then name.
type PackKey = (Reverse<u64>, String);

#[derive(Debug, Default)]
struct SiteNodes {
    spread: BTreeSet<SpreadKey>,
    pack: BTreeSet<PackKey>,
}

/// A live slice, as site quotas count it.
#[derive(Debug)]
struct LiveSlice {
    site: String,
    slivers: i64,
    name: String,
}

/// What the index knows; see the module comment.
#[derive(Debug, Default)]
pub struct Fleet {
    nodes: HashMap<String, NodeHolding>,
    by_site: BTreeMap<String, SiteNodes>,
    sites: BTreeMap<String, Site>,
    /// Live slices by id: their owner's site and their slivers not yet deleted (site quotas).
    live: HashMap<String, LiveSlice>,
    /// Names of live slices (a name is live at most once).
    names: BTreeSet<String>,
    /// Per site: live slices and their slivers, the sums of `live`.
    site_held: HashMap<String, (i64, i64)>,
}

/// A load as an ordered key: non-negative floats order like their bits.
fn load_bits(h: &NodeHolding) -> u64 {
    scheduler::dominant_share(h.allocated, h.node.capacity).to_bits()
}

impl Fleet {
    /// The index of what the database holds.
    pub fn build(
        holdings: Vec<NodeHolding>,
        sites: Vec<Site>,
        live: Vec<(String, String, String, i64)>,
    ) -> Self {
        let mut f = Fleet::default();
        f.set_sites(sites);
        for h in holdings {
            f.put_node(h);
        }
        for (id, name, site, n) in live {
            f.slice_added(&id, &name, &site, n);
        }
        f
    }

    pub fn set_sites(&mut self, sites: Vec<Site>) {
        self.sites = sites.into_iter().map(|s| (s.name.clone(), s)).collect();
    }

    /// Adds, replaces or (None) forgets a site.
    pub fn put_site(&mut self, name: &str, site: Option<Site>) {
        match site {
            Some(s) => self.sites.insert(name.to_string(), s),
            None => self.sites.remove(name),
        };
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.get(name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeHolding> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeHolding> {
        self.nodes.values()
    }

    fn unkey(&mut self, name: &str) {
        let Some(h) = self.nodes.get(name) else {
            return;
        };
        let (bits, live, site) = (load_bits(h), h.slivers, h.node.site.clone());
        if let Some(s) = self.by_site.get_mut(&site) {
            s.spread.remove(&(bits, live, name.to_string()));
            s.pack.remove(&(Reverse(bits), name.to_string()));
            if s.spread.is_empty() {
                self.by_site.remove(&site);
            }
        }
    }

    fn key(&mut self, name: &str) {
        let Some(h) = self.nodes.get(name) else {
            return;
        };
        let (bits, live) = (load_bits(h), h.slivers);
        let s = self.by_site.entry(h.node.site.clone()).or_default();
        s.spread.insert((bits, live, name.to_string()));
        s.pack.insert((Reverse(bits), name.to_string()));
    }

    /// Adds or replaces a node as the database has it.
    pub fn put_node(&mut self, h: NodeHolding) {
        let name = h.node.name.clone();
        self.unkey(&name);
        self.nodes.insert(name.clone(), h);
        self.key(&name);
    }

    /// A node's own fields changed (a report, a heartbeat time); what it holds stays. A node
    /// the index does not know yet is added holding nothing (a new enrolment).
    pub fn update_node(&mut self, node: Node) {
        let name = node.name.clone();
        let h = match self.nodes.get(&name) {
            Some(old) => NodeHolding {
                node,
                allocated: old.allocated,
                slivers: old.slivers,
                ports: old.ports.clone(),
            },
            None => NodeHolding {
                node,
                allocated: Default::default(),
                slivers: 0,
                ports: Default::default(),
            },
        };
        self.put_node(h);
    }

    /// When a node was last heard of, as stored (it tells enrolling nodes from silent ones).
    pub fn set_last_heartbeat(&mut self, name: &str, at: i64) {
        if let Some(h) = self.nodes.get_mut(name) {
            h.node.last_heartbeat = Some(at);
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        self.unkey(name);
        self.nodes.remove(name);
    }

    /// Changes what is held on a node, keeping the sorted sets in step.
    fn change(&mut self, node: &str, f: impl FnOnce(&mut NodeHolding)) {
        if !self.nodes.contains_key(node) {
            return;
        }
        self.unkey(node);
        if let Some(h) = self.nodes.get_mut(node) {
            f(h);
        }
        self.key(node);
    }

    /// A committed sliver holds its resources and ports.
    pub fn hold(&mut self, v: &Sliver) {
        self.change(&v.node, |h| {
            h.allocated = h.allocated.plus(v.resources);
            h.slivers += 1;
            h.ports.extend(v.ports.iter().map(|p| p.host_port));
        });
    }

    /// A sliver committed as deleted gives them back (and no longer counts for its slice).
    pub fn release(&mut self, v: &Sliver) {
        self.change(&v.node, |h| {
            h.allocated = h.allocated.minus(v.resources);
            h.slivers = h.slivers.saturating_sub(1);
            for p in &v.ports {
                h.ports.remove(&p.host_port);
            }
        });
        if let Some(s) = self.live.get_mut(&v.slice_id) {
            s.slivers -= 1;
            if let Some(held) = self.site_held.get_mut(s.site.as_str()) {
                held.1 -= 1;
            }
        }
    }

    /// A live slice of a user of `site` was committed with `slivers` slivers.
    pub fn slice_added(&mut self, id: &str, name: &str, site: &str, slivers: i64) {
        self.names.insert(name.to_string());
        self.live.insert(
            id.to_string(),
            LiveSlice {
                site: site.to_string(),
                slivers,
                name: name.to_string(),
            },
        );
        let held = self.site_held.entry(site.to_string()).or_default();
        held.0 += 1;
        held.1 += slivers;
    }

    /// One more sliver was committed in a live slice (a replacement).
    pub fn sliver_added(&mut self, slice_id: &str) {
        if let Some(s) = self.live.get_mut(slice_id) {
            s.slivers += 1;
            if let Some(held) = self.site_held.get_mut(s.site.as_str()) {
                held.1 += 1;
            }
        }
    }

    /// A slice's end was committed: it no longer counts against its site.
    pub fn slice_ended(&mut self, id: &str) {
        if let Some(s) = self.live.remove(id) {
            self.names.remove(&s.name);
            if let Some(held) = self.site_held.get_mut(&s.site) {
                held.0 -= 1;
                held.1 -= s.slivers;
            }
        }
    }

    /// Whether the slice with this id is live (its usage history is kept only while it is).
    pub fn slice_is_live(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    /// Whether a live slice has this name.
    pub fn name_taken(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Live slices of a site's users and their slivers not yet deleted.
    pub fn site_usage(&self, site: &str) -> (i64, i64) {
        self.site_held.get(site).copied().unwrap_or_default()
    }

    fn candidate(&self, h: &NodeHolding, unavailable: Option<Unavailable>) -> Candidate {
        Candidate {
            node: h.node.name.clone(),
            site: h.node.site.clone(),
            capacity: h.node.capacity,
            allocated: h.allocated,
            port_first: h.node.port_first,
            port_last: h.node.port_last,
            used_ports: h.ports.clone(),
            labels: h.node.labels.clone(),
            unavailable,
            slivers: h.slivers,
        }
    }

    /// Why a node cannot take slivers now, by its site and `state` (the core's liveness view).
    fn unavailable(
        &self,
        h: &NodeHolding,
        state: &impl Fn(&Node) -> Option<Unavailable>,
    ) -> Option<Unavailable> {
        match self.sites.get(&h.node.site) {
            Some(s) if s.enabled => state(&h.node),
            _ => Some(Unavailable::SiteDisabled),
        }
    }

    /// Every node as a candidate, sorted by site then name: what `place` needs to explain a
    /// refusal, or to place exactly on a small fleet.
    pub fn all_candidates(&self, state: impl Fn(&Node) -> Option<Unavailable>) -> Vec<Candidate> {
        let mut all: Vec<&NodeHolding> = self.nodes.values().collect();
        all.sort_by(|a, b| (&a.node.site, &a.node.name).cmp(&(&b.node.site, &b.node.name)));
        all.into_iter()
            .map(|h| self.candidate(h, self.unavailable(h, &state)))
            .collect()
    }

    /// The candidates `place` needs for `req`, and whether they are the whole fleet.
    ///
    /// On a large fleet: per site, the first nodes in the request's order (least loaded for
    /// spread, most for pack) that are available and can take one sliver, as many as the
    /// request has slivers. `place` picks one node at a time, and every pick is either a node
    /// it already picked or the next unpicked one in that order, so it never looks past them.
    /// A site with available nodes of the right labels but no room contributes one of them,
    /// so that a per-site request still counts it and fails as it would on the whole fleet.
    pub fn candidates_for(
        &self,
        req: &Request,
        state: impl Fn(&Node) -> Option<Unavailable>,
    ) -> (Vec<Candidate>, bool) {
        if self.nodes.len() <= SMALL_FLEET {
            return (self.all_candidates(state), true);
        }
        let (Count::Total(n) | Count::PerSite(n)) = req.count;
        let want = n.max(1) as usize;
        let sites: Vec<&String> = if req.sites.is_empty() {
            self.by_site.keys().collect()
        } else {
            req.sites
                .iter()
                .filter(|s| self.by_site.contains_key(*s))
                .collect()
        };
        let mut out = Vec::new();
        for site in sites {
            let nodes = &self.by_site[site];
            let names: Box<dyn Iterator<Item = &String>> = match req.strategy {
                scheduler::Strategy::Spread => Box::new(nodes.spread.iter().map(|k| &k.2)),
                scheduler::Strategy::Pack => Box::new(nodes.pack.iter().map(|k| &k.1)),
            };
            let (mut taken, mut full) = (0, None);
            for name in names {
                let h = &self.nodes[name];
                if self.unavailable(h, &state).is_some() {
                    continue;
                }
                let c = self.candidate(h, None);
                if scheduler::fits_one(&c, req) {
                    out.push(c);
                    taken += 1;
                    if taken == want {
                        break;
                    }
                } else if full.is_none()
                    && req.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
                {
                    full = Some(c);
                }
            }
            if taken == 0 {
                out.extend(full);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AdminState;
    use crate::scheduler::{place, Strategy};
    use slicebed_units::Resources;

    /// A small deterministic generator, so a failure names its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn site(name: &str) -> Site {
        Site {
            name: name.into(),
            display_name: String::new(),
            city: String::new(),
            country: String::new(),
            latitude: 0.0,
            longitude: 0.0,
            enabled: true,
            max_slices: 0,
            max_slivers: 0,
            created_at: 0,
        }
    }

    fn fleet(rng: &mut Rng, nodes: usize, sites: usize) -> Fleet {
        let holdings = (0..nodes)
            .map(|i| {
                let cap = Resources::new(4000, 8 << 30, 100 << 30);
                let used = Resources::new(rng.next(5) as i64 * 1000, (rng.next(9) as i64) << 30, 0);
                let mut labels = BTreeMap::new();
                if rng.next(2) == 0 {
                    labels.insert("gpu".to_string(), "yes".to_string());
                }
                NodeHolding {
                    node: Node {
                        name: format!("n{i:04}"),
                        site: format!("s{}", rng.next(sites as u64)),
                        address: String::new(),
                        capacity: cap,
                        port_first: 20000,
                        port_last: 20000 + rng.next(4) as u32,
                        labels,
                        admin_state: AdminState::Active,
                        agent_version: String::new(),
                        last_heartbeat: None,
                        created_at: 0,
                        drain_deadline: None,
                        cluster: None,
                    },
                    allocated: used,
                    slivers: rng.next(6) as u32,
                    ports: (20000..20000 + rng.next(3) as u32).collect(),
                }
            })
            .collect();
        let sites = (0..sites).map(|s| site(&format!("s{s}"))).collect();
        Fleet::build(holdings, sites, Vec::new())
    }

    fn request(rng: &mut Rng, sites: usize) -> Request {
        let n = 1 + rng.next(12) as u32;
        let mut labels = BTreeMap::new();
        if rng.next(4) == 0 {
            labels.insert("gpu".to_string(), "yes".to_string());
        }
        Request {
            count: if rng.next(3) == 0 {
                Count::PerSite(1 + rng.next(3) as u32)
            } else {
                Count::Total(n)
            },
            sites: (0..rng.next(3))
                .map(|_| format!("s{}", rng.next(sites as u64)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            labels,
            resources: Resources::new(rng.next(3) as i64 * 1000, 1 << 30, 0),
            ports: rng.next(2) as u32,
            strategy: if rng.next(2) == 0 {
                Strategy::Spread
            } else {
                Strategy::Pack
            },
            best_effort: rng.next(3) == 0,
        }
    }

    /// On a fleet too big to hand whole to `place`, the few candidates give the answer the
    /// whole fleet gives: the same outcome and count, the same nodes for pack and per-site
    /// requests (whose picks are purely by order), and as many sites for spread.
    #[test]
    fn the_few_candidates_place_as_the_whole_fleet_does() {
        for seed in 0..120u64 {
            let mut rng = Rng(seed);
            let sites = 1 + rng.next(8) as usize;
            let size = SMALL_FLEET + 1 + rng.next(300) as usize;
            let f = fleet(&mut rng, size, sites);
            for _ in 0..10 {
                let req = request(&mut rng, sites);
                let whole = place(&f.all_candidates(|_| None), &req);
                let (few, complete) = f.candidates_for(&req, |_| None);
                assert!(!complete);
                assert!(few.len() <= f.nodes.len());
                let got = match place(&few, &req) {
                    Ok(p) if !req.best_effort => Ok(p),
                    _ => place(&f.all_candidates(|_| None), &req),
                };
                match (&whole, &got) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.len(), b.len(), "seed {seed}: {req:?}");
                        let sites_of = |p: &Vec<scheduler::Placement>| {
                            p.iter()
                                .map(|x| x.site.clone())
                                .collect::<BTreeSet<_>>()
                                .len()
                        };
                        assert_eq!(sites_of(a), sites_of(b), "seed {seed}: {req:?}");
                        let exact = req.strategy == Strategy::Pack
                            || matches!(req.count, Count::PerSite(_));
                        if exact {
                            assert_eq!(a, b, "seed {seed}: {req:?}");
                        }
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b, "seed {seed}"),
                    _ => panic!("seed {seed}: {req:?}: whole {whole:?}, few {got:?}"),
                }
            }
        }
    }

    #[test]
    fn holds_and_releases_keep_the_order_and_the_site_tally() {
        let mut rng = Rng(7);
        let mut f = fleet(&mut rng, 10, 2);
        f.slice_added("s-1", "x", "s0", 1);
        let name = f.nodes.keys().next().unwrap().clone();
        let before = f.node(&name).unwrap().allocated;
        let v = Sliver {
            id: "x".into(),
            slice_id: "s-1".into(),
            slice: "x".into(),
            index: 0,
            node: name.clone(),
            site: String::new(),
            state: crate::state::SliverState::Pending,
            resources: Resources::new(1000, 0, 0),
            ports: vec![crate::model::AssignedPort {
                name: "p".into(),
                container_port: 1,
                host_port: 29999,
            }],
            last_error: String::new(),
            exit_code: None,
            generation: 1,
            created_at: 0,
            updated_at: 0,
        };
        f.hold(&v);
        assert!(f.node(&name).unwrap().ports.contains(&29999));
        assert_eq!(f.site_usage("s0"), (1, 1));
        f.release(&v);
        assert_eq!(f.node(&name).unwrap().allocated, before);
        assert!(!f.node(&name).unwrap().ports.contains(&29999));
        assert_eq!(f.site_usage("s0"), (1, 0));
        f.slice_ended("s-1");
        assert_eq!(f.site_usage("s0"), (0, 0));
        // Every node is in its site's orders exactly once.
        let keyed: usize = f.by_site.values().map(|s| s.spread.len()).sum();
        let packed: usize = f.by_site.values().map(|s| s.pack.len()).sum();
        assert_eq!((keyed, packed), (10, 10));
    }
}
