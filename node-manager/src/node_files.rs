//! The node's files in its state directory, written by enrollment: `node.json` (who the node
//! is and what it offers), `node.key` (its private key) and `node.crt` (its client
//! certificate, replaced on renewal; `identity.rs`). These files are everything the node
//! manager needs; what runs is read from the engine. Beside them live soft state that may be
//! lost without harm: the owner's reclaim flag (`reclaim.rs`) and the last desired set
//! (`desired_store.rs`). The key is created with mode 0600 and must never be readable by
//! others, not even for an instant (no write-then-chmod); a key that is is refused.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::domain::{PortRange, Resources};
use crate::error::{Error, Result};
use crate::identity::{NodeIdentity, CERT_FILE, KEY_FILE};

/// File name of the node config in the state dir.
pub const CONFIG_FILE: &str = "node.json";
/// File name of the bearer credential older versions kept in the state dir.
pub const CREDENTIAL_FILE: &str = "credential";

/// `node.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Service URL (`http://` or `https://`).
    pub server: String,
    /// Node name as recorded by the service.
    pub node: String,
    /// Site the node joined.
    pub site: String,
    /// CA certificate (PEM) to trust for the service; `None` for plain HTTP.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Capacity offered to slivers.
    pub capacity: Resources,
    /// Host ports lent to slivers.
    pub port_range: PortRange,
    /// Placement labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Address researchers use to reach published ports.
    pub address: String,
    /// Enrolled as a cluster agent: `node` is the cluster's name, and the agent speaks for
    /// every node of its Kubernetes cluster (`node-manager run --runtime kubernetes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::StateFile {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the state dir (mode 0700) if needed.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create", dir))
}

/// Writes `contents` to `path` atomically (temporary file + rename) with the given mode set at
/// creation, so the file never exists with looser permissions.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(contents).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", path))
}

/// Loads `node.json` if present.
pub fn load_config(dir: &Path) -> Result<Option<NodeConfig>> {
    let path = dir.join(CONFIG_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Config { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

/// Loads `node.json` and the identity of an enrolled node.
pub fn load(dir: &Path) -> Result<(NodeConfig, NodeIdentity)> {
    let config = load_config(dir)?.ok_or_else(|| Error::NotEnrolled {
        dir: dir.to_path_buf(),
    })?;
    let key = dir.join(KEY_FILE);
    if !key.exists() && dir.join(CREDENTIAL_FILE).exists() {
        return Err(Error::LegacyCredential {
            dir: dir.to_path_buf(),
        });
    }
    let meta = fs::metadata(&key).map_err(io("read", &key))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::KeyExposed { path: key });
    }
    let key_pem = fs::read_to_string(&key).map_err(io("read", &key))?;
    let cert = dir.join(CERT_FILE);
    let cert_pem = fs::read_to_string(&cert).map_err(io("read", &cert))?;
    Ok((config, NodeIdentity { key_pem, cert_pem }))
}

/// Saves an enrollment: the key (0600) and certificate first, then `node.json` (0644), so a
/// crash in between leaves no config that points at a missing identity. A bearer credential
/// of an older version goes.
pub fn save(dir: &Path, config: &NodeConfig, identity: &NodeIdentity) -> Result<()> {
    create_dir(dir)?;
    write_new(&dir.join(KEY_FILE), identity.key_pem.as_bytes(), 0o600)?;
    write_cert(dir, &identity.cert_pem)?;
    let _ = fs::remove_file(dir.join(CREDENTIAL_FILE));
    let json = serde_json::to_vec_pretty(config).expect("NodeConfig serializes");
    write_new(&dir.join(CONFIG_FILE), &json, 0o644)
}

/// Replaces the client certificate (atomically: a crash leaves the old or the new one).
pub fn write_cert(dir: &Path, cert_pem: &str) -> Result<()> {
    write_new(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            server: "http://127.0.0.1:7000".into(),
            node: "n1".into(),
            site: "lab".into(),
            ca_cert: None,
            capacity: Resources {
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
                disk_bytes: 20 << 30,
            },
            port_range: PortRange {
                first: 30000,
                last: 30099,
            },
            labels: [("zone".to_string(), "a".to_string())].into(),
            address: "127.0.0.1".into(),
            cluster: false,
        }
    }

    fn identity(cert: &str) -> NodeIdentity {
        NodeIdentity {
            key_pem: "key".into(),
            cert_pem: cert.into(),
        }
    }

    #[test]
    fn key_is_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        save(&state, &config(), &identity("cert-1")).unwrap();
        let mode = fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o077, 0);
        let (c, id) = load(&state).unwrap();
        assert_eq!((c, id), (config(), identity("cert-1")));
        // Replacing keeps the mode and leaves no temporary file.
        save(&state, &config(), &identity("cert-2")).unwrap();
        assert_eq!(
            fs::metadata(state.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert!(!state.join("node.key.tmp").exists());
        assert_eq!(load(&state).unwrap().1, identity("cert-2"));
        // A key others may read is refused, naming it.
        fs::set_permissions(state.join(KEY_FILE), fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&state).unwrap_err().to_string();
        assert!(e.contains("node.key") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn an_old_bearer_credential_asks_for_a_new_enrollment() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_vec(&config()).unwrap();
        fs::write(dir.path().join(CONFIG_FILE), json).unwrap();
        fs::write(dir.path().join(CREDENTIAL_FILE), "sbn_x").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, Error::LegacyCredential { .. }), "{e}");
        assert!(e.to_string().contains("enroll --force"), "{e}");
    }

    #[test]
    fn missing_enrollment_and_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(Error::NotEnrolled { .. })));
        fs::write(dir.path().join(CONFIG_FILE), r#"{"server":"x","nod":"n1"}"#).unwrap();
        assert!(matches!(load_config(dir.path()), Err(Error::Config { .. })));
    }
}
