//! Pairing of researcher calls with the session streams nodes open for them.
//!
//! A researcher's call asks its sliver's node, over the control channel, to open a
//! `NodeService/Session` stream; the node dials out with the session id as its first frame and
//! this registry hands the stream to the waiting call. Ids are random and single-use, and a node
//! can only claim sessions that were addressed to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slicebed_proto::v1::SessionFrame;
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

use crate::error::{Error, Result};

/// How long a node has to open a session it was asked for.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's half of a session.
pub struct NodeHalf {
    /// Frames from the node.
    pub inbound: Streaming<SessionFrame>,
    /// Frames to the node; dropping it closes the node's stream, which ends the session there.
    pub outbound: mpsc::Sender<Result<SessionFrame, Status>>,
}

struct Pending {
    node: String,
    tx: oneshot::Sender<NodeHalf>,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    per_user: HashMap<String, usize>,
}

/// Sessions awaiting their node, and how many each user holds.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    max_per_user: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("max_per_user", &self.max_per_user)
            .finish()
    }
}

/// Holds one of a user's session slots; released on drop.
pub struct Slot {
    inner: Arc<Mutex<Inner>>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Sessions {
    /// A registry allowing `max_per_user` concurrent sessions per user.
    pub fn new(max_per_user: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_per_user,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a session slot for `user`, or ResourceExhausted at the limit.
    pub fn reserve(&self, user: &str) -> Result<Slot> {
        let mut g = self.lock();
        let n = g.per_user.entry(user.to_string()).or_default();
        if *n >= self.max_per_user {
            return Err(Error::Exhausted(format!(
                "{user} already has {} open sessions (the limit); close some first",
                self.max_per_user
            )));
        }
        *n += 1;
        Ok(Slot {
            inner: self.inner.clone(),
            user: user.to_string(),
        })
    }

    /// Registers a session expected from `node`; returns its id and where its stream arrives.
    pub fn expect(&self, node: &str) -> (String, oneshot::Receiver<NodeHalf>) {
        use rand::RngCore;
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let (tx, rx) = oneshot::channel();
        self.lock().pending.insert(
            id.clone(),
            Pending {
                node: node.to_string(),
                tx,
            },
        );
        (id, rx)
    }

    /// Forgets a session nobody claimed.
    pub fn abandon(&self, id: &str) {
        self.lock().pending.remove(id);
    }

    /// A node presents a session id; the stream goes to the waiting call.
    pub fn claim(&self, id: &str, node: &str, half: NodeHalf) -> Result<()> {
        let mut g = self.lock();
        match g.pending.get(id) {
            Some(p) if p.node == node => {}
            Some(_) => return Err(Error::denied("this session is not addressed to this node")),
            None => return Err(Error::not_found("session", id)),
        }
        let p = g.pending.remove(id).expect("checked above");
        drop(g);
        p.tx.send(half).map_err(|_| Error::not_found("session", id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_limit_is_released_on_drop() {
        let s = Sessions::new(2);
        let a = s.reserve("alice").unwrap();
        let _b = s.reserve("alice").unwrap();
        match s.reserve("alice") {
            Err(e) => assert!(e.to_string().contains("limit"), "{e}"),
            Ok(_) => panic!("a third session must be refused"),
        }
        assert!(s.reserve("bob").is_ok());
        drop(a);
        assert!(s.reserve("alice").is_ok());
    }

    #[test]
    fn ids_are_unique_and_unknown_claims_fail() {
        let s = Sessions::new(1);
        let (a, _ra) = s.expect("n1");
        let (b, _rb) = s.expect("n1");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        s.abandon(&a);
        assert!(!s.lock().pending.contains_key(&a));
    }
}
