//! The node's image cache: which store images this node manager loaded into the engine, how
//! large they are and when a sliver last used each, kept in `<dir>/cache.json` (written
//! atomically by rename) so a restart keeps the order. Eviction is pure ([`Cache::victims`]):
//! least recently used first, never an image a desired sliver needs, until the total fits
//! the budget. Time comes in as an argument; nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One cached image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Bytes of its config and layers.
    pub bytes: u64,
    /// When a sliver last needed it, in milliseconds since the epoch.
    pub last_used_ms: u64,
}

/// The cache index, by manifest digest.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    entries: BTreeMap<String, Entry>,
    file: Option<PathBuf>,
}

impl Cache {
    /// The index kept in `file` (read now; a missing or unreadable file is an empty cache).
    pub fn open(file: PathBuf) -> Self {
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            entries,
            file: Some(file),
        }
    }

    /// Total bytes of the cached images.
    pub fn total(&self) -> u64 {
        self.entries.values().map(|e| e.bytes).sum()
    }

    /// Whether `digest` is recorded.
    pub fn contains(&self, digest: &str) -> bool {
        self.entries.contains_key(digest)
    }

    /// Records a loaded image (or refreshes it).
    pub fn record(&mut self, digest: &str, bytes: u64, now_ms: u64) {
        self.entries.insert(
            digest.to_string(),
            Entry {
                bytes,
                last_used_ms: now_ms,
            },
        );
        self.save();
    }

    /// A sliver needs `digest` now (in memory; saved with the next change).
    pub fn touch(&mut self, digest: &str, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(digest) {
            e.last_used_ms = e.last_used_ms.max(now_ms);
        }
    }

    /// Forgets an evicted image.
    pub fn forget(&mut self, digest: &str) {
        if self.entries.remove(digest).is_some() {
            self.save();
        }
    }

    /// The images to evict so the total fits `budget`: least recently used first, skipping
    /// every digest in `in_use`. May not reach the budget when what is in use exceeds it.
    pub fn victims(&self, budget: u64, in_use: &BTreeSet<String>) -> Vec<String> {
        let mut total = self.total();
        let mut candidates: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(d, _)| !in_use.contains(*d))
            .collect();
        candidates.sort_by_key(|(d, e)| (e.last_used_ms, (*d).clone()));
        let mut out = Vec::new();
        for (d, e) in candidates {
            if total <= budget {
                break;
            }
            total -= e.bytes;
            out.push(d.clone());
        }
        out
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let tmp = file.with_extension("json.tmp");
        let r = serde_json::to_vec_pretty(&self.entries)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = r {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the image cache index");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn evicts_least_recently_used_first_and_never_what_is_in_use() {
        let mut c = Cache::default();
        c.record("sha256:a", 40, 1_000);
        c.record("sha256:b", 40, 2_000);
        c.record("sha256:c", 40, 3_000);
        c.touch("sha256:a", 4_000);
        // 120 bytes over a budget of 50: b (oldest) then c go; a was used last.
        assert_eq!(c.victims(50, &set(&[])), ["sha256:b", "sha256:c"]);
        // b is needed by a desired sliver: c and a go instead, oldest first.
        assert_eq!(c.victims(50, &set(&["sha256:b"])), ["sha256:c", "sha256:a"]);
        // Within budget: nothing.
        assert!(c.victims(120, &set(&[])).is_empty());
        // Everything in use: nothing, even over budget.
        assert!(c
            .victims(0, &set(&["sha256:a", "sha256:b", "sha256:c"]))
            .is_empty());
    }

    #[test]
    fn the_order_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.json");
        let mut c = Cache::open(file.clone());
        c.record("sha256:old", 10, 1);
        c.record("sha256:new", 10, 2);
        let again = Cache::open(file);
        assert_eq!(again.total(), 20);
        assert_eq!(again.victims(10, &set(&[])), ["sha256:old"]);
    }
}
