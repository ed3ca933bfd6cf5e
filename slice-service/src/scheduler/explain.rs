//! Explains in one line why a request cannot be placed, for a researcher to act on.
//!
//! Every node is judged against the snapshot (before this request) by the first filter it
//! fails; a site is judged by its node that got furthest. Counts are of sites for spread and
//! per-site requests and of nodes for pack. Output must stay one line, deterministic (sorted
//! names) and honest: each site (or node) in scope is counted in exactly one clause. It must
//! never influence placement; it only describes it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Candidate, Count, Placement, Reject, Request, Slot, Strategy};

/// How one site or node fared. Variant order is display order: best first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Qualifies,
    /// Per-site only: the site qualifies but holds `got` of the `of` slivers asked for.
    Short {
        got: usize,
        of: u32,
    },
    NoPorts,
    Lacks(String),
    MissingLabels(String),
    NotReady(String),
    NoNodes,
}

fn node_verdict(c: &Candidate, req: &Request) -> Verdict {
    match Slot::new(c).reject(req) {
        None => Verdict::Qualifies,
        Some(Reject::Unavailable(kind)) => Verdict::NotReady(kind.to_string()),
        // Unreached: callers only judge nodes in the requested sites.
        Some(Reject::WrongSite) => Verdict::NoNodes,
        Some(Reject::MissingLabels(l)) => Verdict::MissingLabels(format!(
            "{} {}",
            plural(l.len(), "label", "labels"),
            l.join(", ")
        )),
        Some(Reject::Lacks(dims)) => Verdict::Lacks(dims.join(" and ")),
        Some(Reject::NoPorts) => Verdict::NoPorts,
    }
}

/// A site is as good as its best node; a site with no ready node lists every kind of outage.
fn site_verdict(nodes: &[&Candidate], req: &Request) -> Verdict {
    let best = nodes
        .iter()
        .map(|c| node_verdict(c, req))
        .min()
        .unwrap_or(Verdict::NoNodes);
    if let Verdict::NotReady(_) = best {
        let kinds: BTreeSet<&str> = nodes
            .iter()
            .filter_map(|c| c.unavailable.as_ref().map(|u| u.as_str()))
            .collect();
        return Verdict::NotReady(kinds.into_iter().collect::<Vec<_>>().join(" or "));
    }
    best
}

pub(super) fn explain(
    candidates: &[Candidate],
    req: &Request,
    plan: &[Placement],
    targets: Option<&BTreeSet<String>>,
) -> String {
    let head = header(req, targets);
    let in_scope: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| req.sites.is_empty() || req.sites.contains(&c.site))
        .collect();
    if candidates.is_empty() {
        return format!("{head}: no nodes are enrolled");
    }
    if in_scope.is_empty() {
        let sites: BTreeSet<&String> = req.sites.iter().collect();
        return format!(
            "{head}: no nodes in {} {}",
            plural(sites.len(), "site", "sites"),
            list(sites)
        );
    }
    let (unit, first, groups) = match (req.count, req.strategy) {
        (Count::Total(_), Strategy::Pack) => {
            let mut g: BTreeMap<Verdict, Vec<String>> = BTreeMap::new();
            for c in &in_scope {
                g.entry(node_verdict(c, req))
                    .or_default()
                    .push(c.node.clone());
            }
            // Nodes are the unit here, but a requested site without any is still worth naming.
            let empty: BTreeSet<&String> = (req.sites.iter())
                .filter(|s| !in_scope.iter().any(|c| &c.site == *s))
                .collect();
            if !empty.is_empty() {
                g.insert(Verdict::NoNodes, empty.into_iter().cloned().collect());
            }
            let q = g.remove(&Verdict::Qualifies).unwrap_or_default();
            (Unit::Node, shortfall(plan.len(), q.len(), None, &q), g)
        }
        (Count::Total(_), Strategy::Spread) => {
            let mut g = site_groups(&in_scope, &req.sites, req);
            let q = g.remove(&Verdict::Qualifies).unwrap_or_default();
            let nodes = in_scope
                .iter()
                .filter(|c| node_verdict(c, req) == Verdict::Qualifies)
                .count();
            (
                Unit::Site,
                shortfall(plan.len(), nodes, Some(q.len()), &q),
                g,
            )
        }
        (Count::PerSite(k), _) => {
            // Only the target sites count, so the clauses add up to the number in the header;
            // with no target at all, every site is shown to say why none is ready.
            let targets: Vec<String> = targets.into_iter().flatten().cloned().collect();
            let nodes: Vec<&Candidate> = in_scope
                .iter()
                .copied()
                .filter(|c| targets.is_empty() || targets.contains(&c.site))
                .collect();
            let mut g = site_groups(&nodes, &targets, req);
            // A site that qualifies on the snapshot may still hold fewer than k slivers.
            for site in g.remove(&Verdict::Qualifies).unwrap_or_default() {
                let got = plan.iter().filter(|p| p.site == site).count();
                let v = if got >= k as usize {
                    Verdict::Qualifies
                } else {
                    Verdict::Short { got, of: k }
                };
                g.entry(v).or_default().push(site);
            }
            let q = g.remove(&Verdict::Qualifies).unwrap_or_default();
            let first = match q.len() {
                0 => "no site qualifies".to_string(),
                n => format!("{n} {} ({})", plural(n, "qualifies", "qualify"), list(&q)),
            };
            (Unit::Site, first, g)
        }
    };
    let mut parts = vec![first];
    parts.extend(render(groups, unit, req));
    format!("{head}: {}", parts.join("; "))
}

/// Sites (those of `nodes` plus `named`, which may have no nodes) grouped by verdict.
fn site_groups(
    nodes: &[&Candidate],
    named: &[String],
    req: &Request,
) -> BTreeMap<Verdict, Vec<String>> {
    let mut sites: BTreeMap<&str, Vec<&Candidate>> =
        named.iter().map(|s| (s.as_str(), vec![])).collect();
    for c in nodes {
        sites.entry(c.site.as_str()).or_default().push(c);
    }
    let mut groups: BTreeMap<Verdict, Vec<String>> = BTreeMap::new();
    for (site, nodes) in sites {
        groups
            .entry(site_verdict(&nodes, req))
            .or_default()
            .push(site.to_string());
    }
    groups
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Site,
    Node,
}

/// The opening clause for a total count: how far the qualifying nodes got.
fn shortfall(placed: usize, nodes: usize, sites: Option<usize>, names: &[String]) -> String {
    if placed == 0 {
        return if sites.is_some() {
            "no site qualifies"
        } else {
            "no node qualifies"
        }
        .to_string();
    }
    let mut s = format!(
        "only {placed} fit on the {nodes} qualifying {}",
        plural(nodes, "node", "nodes")
    );
    if let Some(n) = sites {
        s += &format!(" in {n} {}", plural(n, "site", "sites"));
    }
    s + &format!(" ({})", list(names))
}

/// One clause per failing group, e.g. "2 lack memory (a, b)", in verdict order; all outages
/// share one clause so the reader sees at a glance how much of the testbed is down.
fn render(groups: BTreeMap<Verdict, Vec<String>>, unit: Unit, req: &Request) -> Vec<String> {
    let mut parts = Vec::new();
    let mut outages = Vec::new();
    for (verdict, names) in groups {
        let n = names.len();
        let lack = plural(n, "lacks", "lack");
        let clause = match verdict {
            Verdict::Qualifies => format!("{n} {}", plural(n, "qualifies", "qualify")),
            Verdict::Short { got, of } => {
                format!("{n} {} only {got} of {of}", plural(n, "fits", "fit"))
            }
            Verdict::NoPorts => format!(
                "{n} {lack} {} free {}",
                req.ports,
                plural(req.ports as usize, "port", "ports")
            ),
            Verdict::Lacks(what) | Verdict::MissingLabels(what) => format!("{n} {lack} {what}"),
            Verdict::NotReady(kind) => {
                outages.push((n, format!("{n} {kind} ({})", list(&names))));
                continue;
            }
            Verdict::NoNodes if unit == Unit::Site => {
                format!("{n} {} no nodes", plural(n, "has", "have"))
            }
            Verdict::NoNodes => format!("no nodes in {n} requested {}", plural(n, "site", "sites")),
        };
        if !outages.is_empty() {
            parts.push(outage_clause(std::mem::take(&mut outages), unit));
        }
        parts.push(format!("{clause} ({})", list(&names)));
    }
    if !outages.is_empty() {
        parts.push(outage_clause(outages, unit));
    }
    parts
}

fn outage_clause(outages: Vec<(usize, String)>, unit: Unit) -> String {
    let n: usize = outages.iter().map(|o| o.0).sum();
    let lead = match unit {
        Unit::Site => format!("{n} {} no ready node", plural(n, "has", "have")),
        Unit::Node => format!("{n} {} not ready", plural(n, "is", "are")),
    };
    let detail: Vec<String> = outages.into_iter().map(|o| o.1).collect();
    format!("{lead}: {}", detail.join(", "))
}

/// "needs 2 slivers of cpu 0.5 memory 256Mi disk 1Gi with 2 ports on nodes labelled gpu=a100"
fn header(req: &Request, targets: Option<&BTreeSet<String>>) -> String {
    let mut what = req.resources.to_string();
    if req.ports > 0 {
        what += &format!(
            " with {} {}",
            req.ports,
            plural(req.ports as usize, "port", "ports")
        );
    }
    if !req.labels.is_empty() {
        let l: Vec<String> = req.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        what += &format!(" on nodes labelled {}", l.join(", "));
    }
    match (req.count, targets.map_or(0, BTreeSet::len)) {
        (Count::Total(n), _) => format!(
            "needs {n} {} of {what}",
            plural(n as usize, "sliver", "slivers")
        ),
        (Count::PerSite(k), 0) => format!(
            "needs {k} {} of {what} on every ready site",
            plural(k as usize, "sliver", "slivers")
        ),
        (Count::PerSite(1), m) => format!(
            "needs {m} {} with a node that fits {what}",
            plural(m, "site", "sites")
        ),
        (Count::PerSite(k), m) => format!(
            "needs {m} {} with room for {k} slivers of {what}",
            plural(m, "site", "sites")
        ),
    }
}

fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Names, sorted by the caller, capped so that a thousand-node testbed still fits on one line.
fn list<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    const SHOWN: usize = 8;
    let names: Vec<S> = names.into_iter().collect();
    let mut out: Vec<&str> = names.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(SHOWN);
    let tail = format!("{more} more");
    if more > 0 {
        out.push(&tail);
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ask, node, GI, MI};
    use super::super::{place, Count, Request, Unavailable};
    use slicebed_units::Resources;

    #[test]
    fn explains_sites_without_capacity() {
        let c = [
            node("e1", "eth"),
            node("k1", "kaist"),
            node("m1", "mit"),
            node("t1", "tum").mem(256 * MI),
            node("u1", "ucl").down(Unavailable::Unreachable),
        ];
        let err = place(
            &c,
            &ask(Count::PerSite(1)).sites(&["eth", "kaist", "mit", "tum", "ucl"]),
        )
        .unwrap_err();
        assert_eq!(
            err.reason,
            "needs 5 sites with a node that fits cpu 0.5 memory 512Mi disk 1Gi: 3 qualify (eth, kaist, mit); \
             1 lacks memory (tum); 1 has no ready node: 1 unreachable (ucl)"
        );
        let err = place(&c, &ask(Count::Total(30))).unwrap_err().reason;
        assert!(
            err.starts_with(
                "needs 30 slivers of cpu 0.5 memory 512Mi disk 1Gi: only 24 fit on the 3"
            ),
            "{err}"
        );
        let err = place(&c, &ask(Count::Total(30)).pack()).unwrap_err().reason;
        assert!(
            err.contains("(e1, k1, m1); 1 lacks memory (t1); 1 is not ready: 1 unreachable (u1)"),
            "{err}"
        );
    }

    #[test]
    fn explains_zero_nodes_and_zero_slivers() {
        let req = Request {
            resources: Resources::new(500, 256 * MI, GI),
            ..ask(Count::Total(2))
        };
        let err = place(&[], &req).unwrap_err().reason;
        assert_eq!(
            err,
            "needs 2 slivers of cpu 0.5 memory 256Mi disk 1Gi: no nodes are enrolled"
        );
        let err = place(&[node("n", "z")], &req.clone().sites(&["b", "a"]))
            .unwrap_err()
            .reason;
        assert!(err.ends_with(": no nodes in sites a, b"), "{err}");
        let err = place(
            &[node("n", "z")],
            &ask(Count::PerSite(2)).sites(&["z", "q"]),
        )
        .unwrap_err()
        .reason;
        assert!(
            err.ends_with("1 qualifies (z); 1 has no nodes (q)"),
            "{err}"
        );
        assert_eq!(
            place(&[node("n", "z")], &ask(Count::Total(0)))
                .unwrap_err()
                .reason,
            "asked for zero slivers"
        );
        let down = [node("n", "z").down(Unavailable::Enrolling)];
        let err = place(&down, &ask(Count::PerSite(1))).unwrap_err().reason;
        assert!(
            err.ends_with("no site qualifies; 1 has no ready node: 1 enrolling (z)"),
            "{err}"
        );
    }

    #[test]
    fn explains_sites_that_fit_fewer_than_asked() {
        let c = [
            node("a1", "a").cpu(1000),
            node("b1", "b").cpu(400),
            node("c1", "c"),
        ];
        let err = place(&c, &ask(Count::PerSite(3))).unwrap_err().reason;
        assert_eq!(
            err,
            "needs 3 sites with room for 3 slivers of cpu 0.5 memory 512Mi disk 1Gi: \
             1 qualifies (c); 1 fits only 2 of 3 (a); 1 lacks cpu (b)"
        );
    }

    #[test]
    fn explains_mixed_outages_and_caps_long_lists() {
        let mut c: Vec<_> = (0..10)
            .map(|i| node(&format!("n{i}"), "x").mem(MI))
            .collect();
        c.push(node("d1", "y").down(Unavailable::Draining));
        c.push(node("d2", "y").down(Unavailable::Unreachable));
        c.push(node("e1", "z").down(Unavailable::Disabled));
        let err = place(&c, &ask(Count::Total(1))).unwrap_err().reason;
        assert!(
            err.ends_with(
                "no site qualifies; 1 lacks memory (x); \
             2 have no ready node: 1 disabled (z), 1 draining or unreachable (y)"
            ),
            "{err}"
        );
        let err = place(&c, &ask(Count::Total(1)).pack()).unwrap_err().reason;
        assert!(
            err.contains("10 lack memory (n0, n1, n2, n3, n4, n5, n6, n7, 2 more)"),
            "{err}"
        );
        let err = place(&c, &ask(Count::Total(1)).pack().sites(&["y", "q"]))
            .unwrap_err()
            .reason;
        assert!(
            err.ends_with(
                "no node qualifies; 2 are not ready: 1 draining (d1), 1 unreachable (d2); \
             no nodes in 1 requested site (q)"
            ),
            "{err}"
        );
    }
}
