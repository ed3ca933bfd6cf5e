//! The last desired set the service sent, kept in the state dir (`desired.json`, mode 0600:
//! it holds the slivers' environment) so that a node manager restarted while cut off from the
//! service still ends leases on time and keeps running what it was told to run.
//!
//! Soft state: the service's next `DesiredSet` replaces it, a missing or unreadable file only
//! means waiting for the service as before, and a file written for another node name (a
//! re-enrollment) is ignored. Writes go to a temporary file renamed over the old one, so a
//! crash leaves the old set or the new one, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::domain::SliverSpec;

/// File name in the state dir.
pub const DESIRED_FILE: &str = "desired.json";

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    /// The node the set was sent to.
    node: String,
    /// The slivers, by id.
    slivers: BTreeMap<String, SliverSpec>,
}

/// Where one node's desired set is kept.
#[derive(Debug, Clone)]
pub struct DesiredStore {
    path: PathBuf,
    node: String,
}

impl DesiredStore {
    /// The desired set of `node` in `state_dir`.
    pub fn new(state_dir: &Path, node: &str) -> Self {
        Self {
            path: state_dir.join(DESIRED_FILE),
            node: node.to_string(),
        }
    }

    /// The kept set, if there is one for this node; anything else is logged and ignored.
    pub fn load(&self) -> Option<BTreeMap<String, SliverSpec>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the kept desired set; waiting for the service");
                return None;
            }
        };
        match serde_json::from_str::<Stored>(&text) {
            Ok(s) if s.node == self.node => Some(s.slivers),
            Ok(s) => {
                tracing::warn!(path = %self.path.display(), kept_for = %s.node, "the kept desired set belongs to another node name; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the kept desired set is unreadable; ignored");
                None
            }
        }
    }

    /// Replaces the kept set, atomically.
    pub fn save(&self, slivers: &BTreeMap<String, SliverSpec>) -> std::io::Result<()> {
        let stored = Stored {
            node: self.node.clone(),
            slivers: slivers.clone(),
        };
        let text = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn spec(id: &str) -> SliverSpec {
        SliverSpec {
            sliver_id: id.into(),
            slice: "web".into(),
            index: 0,
            image: "slicebed/base:latest".into(),
            command: vec!["sleep".into(), "1d".into()],
            env: BTreeMap::from([("TOKEN".to_string(), "secret".to_string())]),
            resources: Default::default(),
            ports: vec![],
            restart: Default::default(),
            generation: 3,
            lease_expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            image_digest: String::new(),
            pull: None,
        }
    }

    #[test]
    fn a_saved_set_comes_back_for_its_node_only_and_privately() {
        let dir = tempfile::tempdir().unwrap();
        let m = DesiredStore::new(dir.path(), "n1");
        assert!(m.load().is_none());
        let set = BTreeMap::from([("a".to_string(), spec("a"))]);
        m.save(&set).unwrap();
        assert_eq!(m.load(), Some(set.clone()));
        let mode = fs::metadata(dir.path().join(DESIRED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Replaced, not appended.
        m.save(&BTreeMap::new()).unwrap();
        assert_eq!(m.load(), Some(BTreeMap::new()));
        m.save(&set).unwrap();
        assert!(DesiredStore::new(dir.path(), "n2").load().is_none());
        fs::write(dir.path().join(DESIRED_FILE), "{not json").unwrap();
        assert!(m.load().is_none());
    }
}
