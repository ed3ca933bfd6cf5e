//! Per-slice firewall rules on the node, through the `iptables` command: a sliver may not open
//! connections to the host (its bridge's gateway, any host address; replies to connections
//! the host opened still flow), nor reach another slice's published port through the host
//! (traffic DNAT'd from its bridge to any other interface). Traffic inside the slice's bridge,
//! out to the world, and from outside to published ports is untouched.
//!
//! Each rule carries the comment `slicebed:<node>/<slice>:<version>`, so the rules are found
//! again from iptables itself, never from memory: a restarted agent reconciles them against
//! its slice networks (missing ones inserted, duplicates, stale versions and those of vanished
//! networks deleted). It must never touch a rule without its own node's comment, nor any of
//! Docker's chains but `DOCKER-USER` (which Docker keeps for exactly this), and never flush a
//! chain: other node managers and the host's administrator share these tables.

use std::collections::BTreeSet;

use tokio::process::Command;

/// Chains holding slice rules: host-bound traffic, and Docker's chain for forwarding policy.
const CHAINS: [&str; 2] = ["INPUT", "DOCKER-USER"];

/// Version of the rule set; a rule of another version is replaced.
const VERSION: &str = "1";

/// Prefix of every comment Slicebed writes.
const PREFIX: &str = "slicebed:";

/// Why the node cannot isolate slices (no iptables, not root, no DOCKER-USER chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FirewallError(pub String);

/// The node's iptables; one per runtime, shared by its clones.
#[derive(Debug, Clone)]
pub struct Firewall {
    node: String,
    /// iptables is not transactional: one change at a time in this process (`-w` takes
    /// care of other processes).
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A rule of ours as `iptables -S` printed it.
#[derive(Debug, Clone)]
struct Listed {
    /// Everything after `-A CHAIN`, unquoted: what `-D CHAIN` takes.
    spec: Vec<String>,
    slice: String,
    version: String,
}

impl Firewall {
    /// The firewall of `node` if iptables works here (root, the command, Docker's chain).
    pub async fn probe(node: &str) -> Result<Firewall, FirewallError> {
        if !node.chars().all(name_char) || node.is_empty() {
            return Err(FirewallError(format!(
                "node name {node:?} cannot label firewall rules"
            )));
        }
        let fw = Firewall {
            node: node.to_string(),
            lock: Default::default(),
        };
        fw.iptables(&["-n", "-L", "DOCKER-USER"]).await?;
        Ok(fw)
    }

    /// Makes the rules of `slice` exactly those for its `bridges` (idempotent; a slice has
    /// one network per node, two only for a moment after a creation race).
    pub async fn ensure(&self, slice: &str, bridges: &[String]) -> Result<(), FirewallError> {
        let want = bridges
            .iter()
            .map(|b| (slice.to_string(), b.clone()))
            .collect();
        self.apply(Some(slice), &want).await
    }

    /// Deletes every rule of `slice` on this node.
    pub async fn remove(&self, slice: &str) -> Result<(), FirewallError> {
        self.apply(Some(slice), &BTreeSet::new()).await
    }

    /// Makes this node's rules exactly those of `nets` (slice, bridge): rules of slices
    /// without a network go, missing ones are inserted.
    pub async fn sync(&self, nets: &BTreeSet<(String, String)>) -> Result<(), FirewallError> {
        self.apply(None, nets).await
    }

    /// Reconciles the rules of `only` (or of every slice of the node) with `want`.
    async fn apply(
        &self,
        only: Option<&str>,
        want: &BTreeSet<(String, String)>,
    ) -> Result<(), FirewallError> {
        for (slice, bridge) in want {
            check_name("slice", slice)?;
            check_name("bridge", bridge)?;
        }
        let _one_at_a_time = self.lock.lock().await;
        for chain in CHAINS {
            let mine: Vec<Listed> = self
                .list(chain)
                .await?
                .into_iter()
                .filter(|r| only.is_none_or(|s| r.slice == s))
                .collect();
            let mut kept = BTreeSet::new();
            for r in &mine {
                let bridge = r
                    .spec
                    .windows(2)
                    .find(|w| w[0] == "-i")
                    .map(|w| w[1].clone())
                    .unwrap_or_default();
                let pair = (r.slice.clone(), bridge);
                // The first good one stays; duplicates, stale versions and strays go.
                if r.version == VERSION && want.contains(&pair) && kept.insert(pair) {
                    continue;
                }
                let mut args = vec!["-D".to_string(), chain.to_string()];
                args.extend(r.spec.iter().cloned());
                self.iptables_owned(&args).await?;
                tracing::debug!(chain, slice = %r.slice, "deleted firewall rule");
            }
            for (slice, bridge) in want.iter().filter(|p| !kept.contains(*p)) {
                let mut args = vec!["-I".to_string(), chain.to_string(), "1".to_string()];
                args.extend(rule(chain, &self.comment(slice), bridge));
                self.iptables_owned(&args).await?;
                tracing::debug!(chain, %slice, %bridge, "inserted firewall rule");
            }
        }
        Ok(())
    }

    fn comment(&self, slice: &str) -> String {
        format!("{PREFIX}{}/{slice}:{VERSION}", self.node)
    }

    /// This node's rules in `chain`.
    async fn list(&self, chain: &'static str) -> Result<Vec<Listed>, FirewallError> {
        let out = self.iptables(&["-S", chain]).await?;
        let mine = format!("{PREFIX}{}/", self.node);
        Ok(out
            .lines()
            .filter_map(|line| {
                let words = split(line);
                if words.first().map(String::as_str) != Some("-A") || words.len() < 2 {
                    return None;
                }
                let at = words.iter().position(|w| w == "--comment")?;
                let (slice, version) = words.get(at + 1)?.strip_prefix(&mine)?.rsplit_once(':')?;
                Some(Listed {
                    spec: words[2..].to_vec(),
                    slice: slice.to_string(),
                    version: version.to_string(),
                })
            })
            .collect())
    }

    async fn iptables_owned(&self, args: &[String]) -> Result<String, FirewallError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.iptables(&args).await
    }

    /// Runs `iptables -w ARGS`, returning its stdout; its stderr is the error.
    async fn iptables(&self, args: &[&str]) -> Result<String, FirewallError> {
        let out = Command::new("iptables")
            .arg("-w")
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| FirewallError(format!("cannot run iptables: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err
                .lines()
                .filter(|l| !l.starts_with("# Warning"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(FirewallError(format!(
                "iptables {}: {}",
                args.join(" "),
                err.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The rule of a slice bridge in `chain`, without the `-I CHAIN POS`.
fn rule(chain: &str, comment: &str, bridge: &str) -> Vec<String> {
    let mut r: Vec<&str> = vec!["-i", bridge];
    if chain == "INPUT" {
        // To the host itself: only replies to what the host opened.
        r.extend(["-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED"]);
    } else {
        // Forwarded after a DNAT, i.e. a published port reached through a host address,
        // towards anything but the slice's own bridge.
        r.extend(["!", "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT"]);
    }
    r.extend(["-m", "comment", "--comment", comment, "-j", "REJECT"]);
    r.into_iter().map(String::from).collect()
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn check_name(what: &str, v: &str) -> Result<(), FirewallError> {
    if v.is_empty() || !v.chars().all(name_char) {
        return Err(FirewallError(format!(
            "{what} name {v:?} cannot label firewall rules"
        )));
    }
    Ok(())
}

/// Splits an `iptables -S` line into words, undoing its double quotes and backslashes.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut in_word, mut chars) = (false, false, line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.extend(chars.next());
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_comments() {
        let line = r#"-A INPUT -i br-1 -m comment --comment "slicebed:n1/web:1" -j REJECT --reject-with icmp-port-unreachable"#;
        let w = split(line);
        assert_eq!(w[7], "slicebed:n1/web:1");
        assert_eq!(w.last().unwrap(), "icmp-port-unreachable");
        assert_eq!(split(r#"a "b \"c\" d" "" e"#), ["a", "b \"c\" d", "", "e"]);
    }

    #[test]
    fn rules_name_their_bridge_and_comment() {
        let r = rule("INPUT", "slicebed:n1/web:1", "br-abc");
        assert_eq!(r[..2], ["-i", "br-abc"]);
        assert!(r.contains(&"RELATED,ESTABLISHED".to_string()));
        let r = rule("DOCKER-USER", "c", "br-abc");
        assert!(r.windows(3).any(|w| w == ["!", "-o", "br-abc"]));
        assert!(r.contains(&"DNAT".to_string()));
    }

    #[test]
    fn refuses_names_that_would_confuse_the_label() {
        assert!(check_name("slice", "web-1").is_ok());
        assert!(check_name("slice", "a/b").is_err());
        assert!(check_name("slice", "a b").is_err());
        assert!(check_name("slice", "").is_err());
    }
}
