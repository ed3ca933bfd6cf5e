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
}

/// Sessions awaiting their node. (How many each user may hold is `limits.rs`.)
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
    fn ids_are_unique_and_unknown_claims_fail() {
        let s = Sessions::default();
        let (a, _ra) = s.expect("n1");
        let (b, _rb) = s.expect("n1");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        s.abandon(&a);
        assert!(!s.lock().pending.contains_key(&a));
    }
}
