//! Sliver placement: decides which nodes host a slice's slivers and which host ports each gets.
//!
//! Pure domain code over a snapshot of candidate nodes. It must never do I/O, take locks, or
//! mutate its inputs, and it must never return a plan that overcommits a node or reuses a port:
//! the caller commits exactly what `place` returns, in one transaction, under a lock.
//! When it cannot place, it says why in one line that a researcher can act on.

use std::collections::{BTreeMap, BTreeSet};

use slicebed_units::Resources;

mod explain;

/// Why a node cannot take new slivers right now (None = it can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    Unreachable,
    Draining,
    Disabled,
    Enrolling,
    SiteDisabled,
    EngineDown,
}

impl Unavailable {
    /// The word used in explanations.
    pub fn as_str(&self) -> &'static str {
        match self {
            Unavailable::Unreachable => "unreachable",
            Unavailable::Draining => "draining",
            Unavailable::Disabled => "disabled",
            Unavailable::Enrolling => "enrolling",
            Unavailable::SiteDisabled => "site disabled",
            Unavailable::EngineDown => "container engine down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub site: String,
    pub capacity: Resources,
    /// Already reserved by live slivers.
    pub allocated: Resources,
    /// Inclusive host port range lent to slivers.
    pub port_first: u32,
    pub port_last: u32,
    /// Host ports already assigned on this node.
    pub used_ports: BTreeSet<u32>,
    pub labels: BTreeMap<String, String>,
    pub unavailable: Option<Unavailable>,
    /// Live slivers already on the node (load tie-breaker).
    pub slivers: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Total(u32),
    PerSite(u32),
}

/// The slice's own placement strategy: one type from the API edge to here.
pub use crate::model::PlacementStrategy as Strategy;

#[derive(Debug, Clone)]
pub struct Request {
    pub count: Count,
    /// Empty = any site.
    pub sites: Vec<String>,
    /// The node must carry all of these.
    pub labels: BTreeMap<String, String>,
    /// Per sliver.
    pub resources: Resources,
    /// Host ports needed per sliver.
    pub ports: u32,
    pub strategy: Strategy,
    pub best_effort: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub site: String,
    pub host_ports: Vec<u32>,
}

/// The request cannot be met; `reason` is one human line explaining every failed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsatisfiable {
    pub reason: String,
}

impl std::fmt::Display for Unsatisfiable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Unsatisfiable {}

fn unsat(reason: impl Into<String>) -> Unsatisfiable {
    Unsatisfiable {
        reason: reason.into(),
    }
}

/// Places the slivers of `req` on `candidates`; the result is in sliver-index order.
///
/// Placement is greedy, one sliver at a time. Because slivers are identical and nodes do not
/// share resources, greedy placement always reaches the largest possible count, so an `Err`
/// without `best_effort` means the request truly cannot fit, not that we chose badly.
pub fn place(candidates: &[Candidate], req: &Request) -> Result<Vec<Placement>, Unsatisfiable> {
    let (Count::Total(n) | Count::PerSite(n)) = req.count;
    if n == 0 {
        return Err(unsat("asked for zero slivers"));
    }
    let r = req.resources;
    if r.cpu_millis < 0 || r.memory_bytes < 0 || r.disk_bytes < 0 {
        // A negative request would "free" capacity and let later slivers overcommit.
        return Err(unsat(format!("asked for negative resources ({r})")));
    }
    let mut slots: Vec<Slot> = candidates.iter().map(Slot::new).collect();
    let (plan, wanted, targets) = match req.count {
        Count::Total(n) if req.strategy == Strategy::Spread => {
            (spread(&mut slots, req, n), n as usize, None)
        }
        Count::Total(n) => {
            let all: Vec<usize> = (0..slots.len()).collect();
            (fill(&mut slots, &all, req, n), n as usize, None)
        }
        Count::PerSite(k) => {
            let targets = target_sites(candidates, req);
            let plan = per_site(&mut slots, req, &targets, k);
            (plan, k as usize * targets.len(), Some(targets))
        }
    };
    let met = !plan.is_empty() && (plan.len() == wanted || req.best_effort);
    if met {
        Ok(plan)
    } else {
        let why = explain::explain(candidates, req, &plan, targets.as_ref());
        Err(unsat(why))
    }
}

/// Names of the resource dimensions, in the order `dims` lists them.
const DIMS: [&str; 3] = ["cpu", "memory", "disk"];

fn dims(r: Resources) -> [i64; 3] {
    [r.cpu_millis, r.memory_bytes, r.disk_bytes]
}

/// The fullest dimension's share of capacity: the load `place` orders nodes by (the fleet
/// index keeps nodes sorted by it).
pub fn dominant_share(used: Resources, capacity: Resources) -> f64 {
    let (used, cap) = (dims(used), dims(capacity));
    (0..3)
        .map(|d| match (used[d], cap[d]) {
            (u, c) if c > 0 => u as f64 / c as f64,
            (u, _) if u > 0 => f64::INFINITY,
            _ => 0.0,
        })
        .fold(0.0, f64::max)
}

/// Whether one sliver of `req` fits on `c` as it stands (availability aside): the site, the
/// labels, the resources and the ports. The fleet index uses it to pick the few nodes it hands
/// to `place`.
pub fn fits_one(c: &Candidate, req: &Request) -> bool {
    !matches!(
        Slot::new(c).reject(req),
        Some(Reject::WrongSite | Reject::MissingLabels(_) | Reject::Lacks(_) | Reject::NoPorts)
    )
}

/// A candidate plus what this request has tentatively put on it so far.
struct Slot<'a> {
    c: &'a Candidate,
    extra: Resources,
    taken: BTreeSet<u32>,
    placed: u32,
}

/// Why a node cannot take one more sliver, in the order the filters are applied.
enum Reject {
    Unavailable(&'static str),
    WrongSite,
    MissingLabels(Vec<String>),
    Lacks(Vec<&'static str>),
    NoPorts,
}

impl<'a> Slot<'a> {
    fn new(c: &'a Candidate) -> Self {
        Slot {
            c,
            extra: Resources::default(),
            taken: BTreeSet::new(),
            placed: 0,
        }
    }

    fn used(&self) -> Resources {
        self.c.allocated.plus(self.extra)
    }

    /// Slivers on the node, live ones plus this request's.
    fn live(&self) -> u64 {
        u64::from(self.c.slivers) + u64::from(self.placed)
    }

    /// The first filter this node fails for one more sliver, or None if it can take it.
    fn reject(&self, req: &Request) -> Option<Reject> {
        let c = self.c;
        if let Some(u) = &c.unavailable {
            return Some(Reject::Unavailable(u.as_str()));
        }
        if !req.sites.is_empty() && !req.sites.contains(&c.site) {
            return Some(Reject::WrongSite);
        }
        let missing: Vec<String> = (req.labels.iter())
            .filter(|(k, v)| c.labels.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !missing.is_empty() {
            return Some(Reject::MissingLabels(missing));
        }
        let (after, cap) = (dims(self.used().plus(req.resources)), dims(c.capacity));
        let lacking: Vec<&'static str> = (0..3)
            .filter(|&d| after[d] > cap[d])
            .map(|d| DIMS[d])
            .collect();
        if !lacking.is_empty() {
            return Some(Reject::Lacks(lacking));
        }
        if self.free_ports(req.ports as usize).len() < req.ports as usize {
            return Some(Reject::NoPorts);
        }
        None
    }

    /// Up to `limit` of the lowest ports in range that neither live slivers nor this request use.
    /// Stops early, so a huge range with few used ports stays cheap.
    fn free_ports(&self, limit: usize) -> Vec<u32> {
        (self.c.port_first..=self.c.port_last)
            .filter(|p| !self.c.used_ports.contains(p) && !self.taken.contains(p))
            .take(limit)
            .collect()
    }

    /// Dominant share: the fullest dimension decides, so a node with spare CPU but no memory
    /// counts as full rather than half-empty.
    fn load(&self) -> f64 {
        dominant_share(self.used(), self.c.capacity)
    }

    /// How many more slivers fit here, at most `cap` (a zero-size request would be unbounded).
    fn room(&self, req: &Request, cap: u32) -> u32 {
        if self.reject(req).is_some() {
            return 0;
        }
        let (free, need) = (
            dims(self.c.capacity.minus(self.used())),
            dims(req.resources),
        );
        let mut room = u64::from(cap);
        for d in (0..3).filter(|&d| need[d] > 0) {
            room = room.min((free[d] / need[d]).max(0) as u64);
        }
        if req.ports > 0 {
            let want = (room as usize).saturating_mul(req.ports as usize);
            room = room.min((self.free_ports(want).len() / req.ports as usize) as u64);
        }
        room as u32
    }

    /// Reserves one sliver here; the caller has checked that it fits.
    fn take(&mut self, req: &Request) -> Placement {
        let host_ports = self.free_ports(req.ports as usize);
        self.taken.extend(&host_ports);
        self.extra = self.extra.plus(req.resources);
        self.placed += 1;
        Placement {
            node: self.c.node.clone(),
            site: self.c.site.clone(),
            host_ports,
        }
    }
}

/// Chooses among `among` the node that takes the next sliver: least loaded for spread (then
/// fewer slivers, then name), most loaded for pack (then name). Names keep it deterministic.
fn pick(slots: &[Slot], among: &[usize], req: &Request) -> Option<usize> {
    let fitting = among
        .iter()
        .copied()
        .filter(|&i| slots[i].reject(req).is_none());
    fitting.min_by(|&a, &b| {
        let (a, b) = (&slots[a], &slots[b]);
        let by_load = match req.strategy {
            Strategy::Spread => (a.load().total_cmp(&b.load())).then(a.live().cmp(&b.live())),
            Strategy::Pack => b.load().total_cmp(&a.load()),
        };
        by_load.then_with(|| a.c.node.cmp(&b.c.node))
    })
}

/// Puts up to `n` slivers on the nodes `among`, one at a time by `pick`.
fn fill(slots: &mut [Slot], among: &[usize], req: &Request, n: u32) -> Vec<Placement> {
    let mut plan = Vec::new();
    while plan.len() < n as usize {
        match pick(slots, among, req) {
            Some(i) => plan.push(slots[i].take(req)),
            None => break,
        }
    }
    plan
}

/// Round-robin over sites, one sliver per site per round, so every site that can host a sliver
/// gets one before any site gets two. Sites with the most room go first, then by name.
fn spread(slots: &mut [Slot], req: &Request, n: u32) -> Vec<Placement> {
    let mut by_site: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        by_site.entry(s.c.site.as_str()).or_default().push(i);
    }
    let room = |nodes: &[usize]| -> u64 {
        nodes
            .iter()
            .map(|&i| u64::from(slots[i].room(req, n)))
            .sum()
    };
    let mut order: Vec<(u64, &str, Vec<usize>)> = by_site
        .into_iter()
        .map(|(site, nodes)| (room(&nodes), site, nodes))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut plan = Vec::new();
    loop {
        let before = plan.len();
        for (_, _, nodes) in &order {
            if plan.len() == n as usize {
                return plan;
            }
            if let Some(i) = pick(slots, nodes, req) {
                plan.push(slots[i].take(req));
            }
        }
        if plan.len() == before {
            return plan;
        }
    }
}

/// The sites a per-site request covers: the requested ones, or else every site with a node
/// that is ready and carries the labels (capacity is judged later, so a full site still counts
/// and makes the request fail rather than silently shrink).
fn target_sites(candidates: &[Candidate], req: &Request) -> BTreeSet<String> {
    if !req.sites.is_empty() {
        return req.sites.iter().cloned().collect();
    }
    (candidates.iter())
        .filter(|c| {
            !matches!(
                Slot::new(c).reject(req),
                Some(Reject::Unavailable(_) | Reject::MissingLabels(_))
            )
        })
        .map(|c| c.site.clone())
        .collect()
}

/// `k` slivers on each target site, site by site in name order.
fn per_site(
    slots: &mut [Slot],
    req: &Request,
    targets: &BTreeSet<String>,
    k: u32,
) -> Vec<Placement> {
    let mut plan = Vec::new();
    for site in targets {
        let nodes: Vec<usize> = (0..slots.len())
            .filter(|&i| &slots[i].c.site == site)
            .collect();
        plan.extend(fill(slots, &nodes, req, k));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{
        any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig,
    };
    use proptest::strategy::Strategy as Gen;

    pub(super) const GI: i64 = 1 << 30;
    pub(super) const MI: i64 = 1 << 20;

    /// A ready node with 4 cores, 8Gi memory, 100Gi disk and ports 20000..=20099.
    pub(super) fn node(name: &str, site: &str) -> Candidate {
        Candidate {
            node: name.into(),
            site: site.into(),
            capacity: Resources::new(4000, 8 * GI, 100 * GI),
            allocated: Resources::default(),
            port_first: 20000,
            port_last: 20099,
            used_ports: BTreeSet::new(),
            labels: BTreeMap::new(),
            unavailable: None,
            slivers: 0,
        }
    }

    impl Candidate {
        pub(super) fn cpu(mut self, m: i64) -> Self {
            self.capacity.cpu_millis = m;
            self
        }
        pub(super) fn mem(mut self, b: i64) -> Self {
            self.capacity.memory_bytes = b;
            self
        }
        pub(super) fn used(mut self, r: Resources) -> Self {
            self.allocated = r;
            self
        }
        pub(super) fn ports(mut self, first: u32, last: u32, used: &[u32]) -> Self {
            (self.port_first, self.port_last, self.used_ports) =
                (first, last, used.iter().copied().collect());
            self
        }
        pub(super) fn label(mut self, k: &str, v: &str) -> Self {
            self.labels.insert(k.into(), v.into());
            self
        }
        pub(super) fn down(mut self, why: Unavailable) -> Self {
            self.unavailable = Some(why);
            self
        }
    }

    /// One sliver is 0.5 core, 512Mi memory, 1Gi disk, no ports; spread; all-or-nothing.
    pub(super) fn ask(count: Count) -> Request {
        Request {
            count,
            sites: vec![],
            labels: BTreeMap::new(),
            resources: Resources::new(500, 512 * MI, GI),
            ports: 0,
            strategy: Strategy::Spread,
            best_effort: false,
        }
    }

    impl Request {
        pub(super) fn sites(mut self, s: &[&str]) -> Self {
            self.sites = s.iter().map(|s| s.to_string()).collect();
            self
        }
        pub(super) fn pack(mut self) -> Self {
            self.strategy = Strategy::Pack;
            self
        }
        fn best_effort(mut self) -> Self {
            self.best_effort = true;
            self
        }
        fn with_ports(mut self, n: u32) -> Self {
            self.ports = n;
            self
        }
    }

    fn nodes_of(p: &[Placement]) -> Vec<&str> {
        p.iter().map(|p| p.node.as_str()).collect()
    }

    fn sites_of(p: &[Placement]) -> BTreeSet<&str> {
        p.iter().map(|p| p.site.as_str()).collect()
    }

    #[test]
    fn spread_covers_distinct_sites_first() {
        let c = [
            node("a1", "a"),
            node("a2", "a"),
            node("b1", "b"),
            node("c1", "c"),
        ];
        let p = place(&c, &ask(Count::Total(3))).unwrap();
        assert_eq!(sites_of(&p), BTreeSet::from(["a", "b", "c"]));
        // A fourth sliver goes to the site's other, empty node rather than doubling up.
        let p = place(&c, &ask(Count::Total(4))).unwrap();
        assert_eq!(p.iter().filter(|p| p.site == "a").count(), 2);
        assert!(nodes_of(&p).contains(&"a1") && nodes_of(&p).contains(&"a2"));
    }

    #[test]
    fn per_site_places_k_on_each_requested_site() {
        let c = [
            node("a1", "a"),
            node("b1", "b"),
            node("b2", "b"),
            node("c1", "c"),
        ];
        let p = place(&c, &ask(Count::PerSite(2)).sites(&["a", "b"])).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p.iter().filter(|p| p.site == "a").count(), 2);
        assert_eq!(
            nodes_of(&p[2..]),
            ["b1", "b2"],
            "spread within a site uses distinct nodes"
        );
        // No sites named: every ready site gets its share.
        assert_eq!(place(&c, &ask(Count::PerSite(1))).unwrap().len(), 3);
    }

    #[test]
    fn pack_fills_the_fullest_node_first() {
        let half = Resources::new(2000, GI, GI);
        let c = [node("a", "x"), node("b", "y").used(half), node("c", "y")];
        let p = place(&c, &ask(Count::Total(5)).pack()).unwrap();
        // b takes 4 more (2 cores left), then a and c are equal and a wins by name.
        assert_eq!(nodes_of(&p), ["b", "b", "b", "b", "a"]);
    }

    #[test]
    fn best_effort_returns_what_fits() {
        let c = [node("a", "x").cpu(1000), node("b", "y").cpu(500)];
        assert!(place(&c, &ask(Count::Total(5))).is_err());
        let p = place(&c, &ask(Count::Total(5)).best_effort()).unwrap();
        assert_eq!(nodes_of(&p), ["a", "b", "a"]);
        let none = [node("a", "x").cpu(100)];
        let err = place(&none, &ask(Count::Total(5)).best_effort()).unwrap_err();
        assert!(
            err.reason.ends_with("no site qualifies; 1 lacks cpu (x)"),
            "{err}"
        );
    }

    #[test]
    fn unavailable_nodes_are_skipped() {
        let c = [
            node("a", "x").down(Unavailable::Unreachable),
            node("b", "x").down(Unavailable::Draining),
            node("c", "y"),
        ];
        assert_eq!(
            nodes_of(&place(&c, &ask(Count::Total(2))).unwrap()),
            ["c", "c"]
        );
        assert_eq!(
            place(&c, &ask(Count::PerSite(1))).unwrap().len(),
            1,
            "site x has no ready node"
        );
    }

    #[test]
    fn labels_are_required() {
        let c = [
            node("a", "x").label("gpu", "a100"),
            node("b", "y").label("gpu", "t4"),
            node("c", "z"),
        ];
        let mut req = ask(Count::Total(1));
        req.labels.insert("gpu".into(), "a100".into());
        assert_eq!(nodes_of(&place(&c, &req).unwrap()), ["a"]);
        req.count = Count::Total(9);
        let err = place(&c, &req).unwrap_err().reason;
        assert!(
            err.ends_with(
                ": only 8 fit on the 1 qualifying node in 1 site (x); 2 lack label gpu=a100 (y, z)"
            ),
            "{err}"
        );
    }

    #[test]
    fn ports_are_lowest_free_and_distinct() {
        let c = [node("a", "x").ports(100, 105, &[100, 102])];
        let p = place(&c, &ask(Count::Total(2)).with_ports(2)).unwrap();
        assert_eq!(p[0].host_ports, [101, 103]);
        assert_eq!(p[1].host_ports, [104, 105]);
        let err = place(&c, &ask(Count::Total(3)).with_ports(2))
            .unwrap_err()
            .reason;
        assert!(
            err.contains("only 2 fit on the 1 qualifying node in 1 site (x)"),
            "{err}"
        );
        let err = place(&c, &ask(Count::Total(1)).with_ports(5))
            .unwrap_err()
            .reason;
        assert!(err.contains("1 lacks 5 free ports (x)"), "{err}");
    }

    // ----- properties ------------------------------------------------------------------------

    const SITES: [&str; 4] = ["s0", "s1", "s2", "s3"];

    fn arb_candidates() -> impl Gen<Value = Vec<Candidate>> {
        let one = (
            0..SITES.len(),
            (0..4000i64, 0..4000i64, 0..4000i64),
            (0..1500i64, 0..1500i64, 0..1500i64),
            (
                0u32..4,
                0u32..8,
                proptest::collection::btree_set(0u32..10, 0..4),
            ),
            (
                any::<bool>(),
                prop_oneof![4 => Just(None), 1 => Just(Some(Unavailable::Draining))],
                0u32..3,
            ),
        );
        proptest::collection::vec(one, 0..8).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(
                    |(i, (site, cap, used, (first, len, ports), (gpu, down, slivers)))| {
                        let mut c = node(&format!("n{i}"), SITES[site]);
                        c.capacity = Resources::new(cap.0, cap.1, cap.2);
                        c.allocated = Resources::new(used.0, used.1, used.2);
                        // Used ports may fall outside the range, and the range may be empty.
                        c.port_first = first;
                        c.port_last = (first + len).saturating_sub(1);
                        c.used_ports = ports;
                        c.unavailable = down;
                        c.slivers = slivers;
                        if gpu {
                            c.labels.insert("gpu".into(), "yes".into());
                        }
                        c
                    },
                )
                .collect()
        })
    }

    fn arb_request() -> impl Gen<Value = Request> {
        (
            prop_oneof![3 => (0u32..10).prop_map(Count::Total), 1 => (0u32..4).prop_map(Count::PerSite)],
            proptest::collection::vec(prop_oneof![Just("s0"), Just("s1"), Just("s2"), Just("zz")], 0..3),
            (proptest::bool::weighted(0.2), 0..800i64, 0..800i64, 0..800i64, 0u32..3),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(|(count, sites, (gpu, cpu, mem, disk, ports), (pack, best_effort))| {
                let mut r = ask(count).sites(&sites);
                if gpu {
                    r.labels.insert("gpu".into(), "yes".into());
                }
                r.resources = Resources::new(cpu, mem, disk);
                r.ports = ports;
                r.strategy = if pack { Strategy::Pack } else { Strategy::Spread };
                r.best_effort = best_effort;
                r
            })
    }

    /// Ready and carrying the requested labels: what makes a site a per-site target.
    fn ready_and_labelled(c: &Candidate, req: &Request) -> bool {
        c.unavailable.is_none() && req.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
    }

    /// Independent check: how many slivers a node could take on its own, up to `cap`.
    fn solo_room(c: &Candidate, req: &Request, cap: u32) -> u32 {
        let ok =
            ready_and_labelled(c, req) && (req.sites.is_empty() || req.sites.contains(&c.site));
        let free_ports = (c.port_first..=c.port_last)
            .filter(|p| !c.used_ports.contains(p))
            .count() as u32;
        (0..=cap)
            .take_while(|&m| {
                ok && c
                    .allocated
                    .plus(req.resources.times(m.into()))
                    .fits_within(c.capacity)
                    && free_ports >= m * req.ports
            })
            .last()
            .unwrap_or(0)
    }

    fn by_node<'a>(
        c: &'a [Candidate],
        p: &'a [Placement],
    ) -> Vec<(&'a Candidate, Vec<&'a Placement>)> {
        c.iter()
            .map(|c| (c, p.iter().filter(|p| p.node == c.node).collect()))
            .collect()
    }

    proptest! {
        // Cheap cases (well under a second in all), so look at more of them than the default.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn never_overcommits_and_ports_are_sound(c in arb_candidates(), req in arb_request()) {
            let Ok(p) = place(&c, &req) else { return Ok(()) };
            prop_assert!(!p.is_empty());
            for (cand, mine) in by_node(&c, &p) {
                let total = cand.allocated.plus(req.resources.times(mine.len() as i64));
                prop_assert!(mine.is_empty() || total.fits_within(cand.capacity), "{} overcommitted", cand.node);
                let mut seen = BTreeSet::new();
                for pl in mine {
                    prop_assert_eq!(pl.host_ports.len(), req.ports as usize);
                    for &port in &pl.host_ports {
                        prop_assert!((cand.port_first..=cand.port_last).contains(&port));
                        prop_assert!(!cand.used_ports.contains(&port));
                        prop_assert!(seen.insert(port), "port {} reused on {}", port, cand.node);
                    }
                }
            }
        }

        #[test]
        fn only_qualifying_nodes_are_used(c in arb_candidates(), req in arb_request()) {
            let Ok(p) = place(&c, &req) else { return Ok(()) };
            for (cand, mine) in by_node(&c, &p) {
                prop_assert!(mine.is_empty() || solo_room(cand, &req, 1) == 1, "{} does not qualify", cand.node);
                prop_assert!(mine.iter().all(|pl| pl.site == cand.site));
            }
        }

        #[test]
        fn all_or_nothing_and_greedy_is_maximal(c in arb_candidates(), req in arb_request()) {
            let res = place(&c, &req);
            match req.count {
                Count::Total(n) => {
                    let room: u32 = c.iter().map(|c| solo_room(c, &req, n)).sum();
                    let best = room.min(n) as usize;
                    match &res {
                        Ok(p) if req.best_effort => prop_assert_eq!(p.len(), best),
                        Ok(p) => prop_assert_eq!(p.len(), n as usize),
                        Err(_) => prop_assert!(best == 0 || (!req.best_effort && best < n as usize)),
                    }
                }
                Count::PerSite(k) => {
                    // Each target site should hold min(k, what its nodes can take).
                    let targets: BTreeSet<&str> = if req.sites.is_empty() {
                        c.iter().filter(|c| ready_and_labelled(c, &req)).map(|c| c.site.as_str()).collect()
                    } else {
                        req.sites.iter().map(String::as_str).collect()
                    };
                    let expect: BTreeMap<&str, u32> = targets.iter().map(|&s| {
                        let room: u32 = c.iter().filter(|c| c.site == s).map(|c| solo_room(c, &req, k)).sum();
                        (s, room.min(k))
                    }).collect();
                    let full = !targets.is_empty() && expect.values().all(|&e| e == k);
                    let some = expect.values().any(|&e| e > 0);
                    match &res {
                        Ok(p) => {
                            prop_assert!(full || req.best_effort);
                            let mut got: BTreeMap<&str, u32> = targets.iter().map(|&s| (s, 0)).collect();
                            for pl in p {
                                *got.entry(pl.site.as_str()).or_default() += 1;
                            }
                            prop_assert_eq!(got, expect);
                        }
                        Err(_) => prop_assert!(!some || (!full && !req.best_effort)),
                    }
                }
            }
        }

        #[test]
        fn spread_reaches_distinct_sites_first(c in arb_candidates(), mut req in arb_request(), n in 1u32..8) {
            req.count = Count::Total(n);
            req.strategy = Strategy::Spread;
            // A site can host a sliver on its own when one of its nodes can.
            let hostable: BTreeSet<&str> =
                c.iter().filter(|c| solo_room(c, &req, 1) == 1).map(|c| c.site.as_str()).collect();
            match place(&c, &req) {
                Ok(p) => prop_assert_eq!(sites_of(&p).len(), (n as usize).min(hostable.len())),
                Err(_) => prop_assert!(hostable.is_empty() || !req.best_effort),
            }
        }
    }
}
