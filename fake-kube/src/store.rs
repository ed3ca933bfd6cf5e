//! The object store: every object the fake holds, one global resourceVersion counter (as etcd's
//! revision), and a bounded history of changes that watches replay from.
//!
//! Writes go through [`Store::put`] and [`Store::remove`] only, so every change gets the next
//! resourceVersion, lands in the history and reaches open watches in order. The store never
//! validates or defaults objects (ops.rs does); it must never be locked across an `.await`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::kinds::Kind;

/// Which object: kind, namespace ("" for cluster-scoped kinds), name.
pub type Key = (&'static str, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: &'static Kind,
    pub namespace: String,
    pub event: EventType,
    /// The object after the change (for a delete, its last state with the delete's version).
    pub object: Value,
    /// The object before the change, so a filtered watch can turn a MODIFIED that leaves or enters
    /// its selector into DELETED or ADDED, as the API server does.
    pub old: Option<Value>,
    pub rv: u64,
}

pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Watches from a resourceVersion older than this get 410 Gone.
    oldest_valid: u64,
    tx: broadcast::Sender<Change>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit,
            oldest_valid: 0,
            tx,
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn oldest_valid(&self) -> u64 {
        self.oldest_valid
    }

    pub fn get(&self, kind: &'static Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind.plural, ns.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or (ns = None) all.
    pub fn list<'a>(
        &'a self,
        kind: &'static Kind,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((p, n, _), _)| *p == kind.plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// Stores `object` under the next resourceVersion (written into its metadata) and publishes
    /// the change; returns the stored object.
    pub fn put(&mut self, kind: &'static Kind, ns: &str, name: &str, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let key = (kind.plural, ns.to_string(), name.to_string());
        let old = self.objects.insert(key, object.clone());
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(Change {
            kind,
            namespace: ns.to_string(),
            event,
            object: object.clone(),
            old,
            rv: self.rv,
        });
        object
    }

    /// Removes an object, publishing DELETED with a new resourceVersion; returns its last state.
    pub fn remove(&mut self, kind: &'static Kind, ns: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(kind.plural, ns.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.publish(Change {
            kind,
            namespace: ns.to_string(),
            event: EventType::Deleted,
            object: object.clone(),
            old: None,
            rv: self.rv,
        });
        Some(object)
    }

    fn publish(&mut self, change: Change) {
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_valid = dropped.rv;
            }
        }
        let _ = self.tx.send(change);
    }

    /// Forgets all history (as an etcd compaction would), so every watch resuming from a version
    /// before now gets 410 Gone. The counter moves on first, as other writes would have moved it.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.oldest_valid = self.rv;
    }

    /// Changes after `rv` still in the history, plus a receiver for the ones to come, taken
    /// together so nothing falls between them. None if `rv` is older than the history holds.
    pub fn changes_since(&self, rv: u64) -> Option<(Vec<Change>, broadcast::Receiver<Change>)> {
        if rv < self.oldest_valid {
            return None;
        }
        let past = self.history.iter().filter(|c| c.rv > rv).cloned().collect();
        Some((past, self.tx.subscribe()))
    }
}
