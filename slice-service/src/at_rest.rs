//! Secrets at rest: the data directory, the embedded database and the secret files the service
//! keeps are readable by the service's user only, checked at every start.
//!
//! The database holds slice environments and token hashes; a 0755 directory with a 0644
//! database let every local user read them. What the service owns it tightens (0700 for the
//! directory, 0600 for files) and says so in the log. A TLS key that others may read is
//! refused instead: it is someone else's file to fix, and it may already have leaked. This
//! module must never loosen a mode, and never touch files outside the data directory except
//! to read the TLS key's mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Files of the data directory that hold secrets or the database itself.
const PRIVATE_FILES: &[&str] = &[
    "slicebed.db",
    "slicebed.db-wal",
    "slicebed.db-shm",
    "admin.token",
    crate::images::pull::KEY_FILE,
];

/// Tightens the data directory to 0700 and its private files (and an SQLite database at
/// `database_file`, wherever it lives) to 0600, logging each change; refuses a TLS key that
/// others may read. Run before the database is opened.
pub fn secure(
    data_dir: &Path,
    database_file: Option<&Path>,
    tls_key: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(key) = tls_key {
        check_key(key)?;
    }
    tighten(data_dir, 0o700)?;
    let mut files: Vec<PathBuf> = PRIVATE_FILES.iter().map(|f| data_dir.join(f)).collect();
    if let Some(db) = database_file {
        // Create it private rather than let the driver create it with the umask's 0644.
        if !db.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(db)
                .with_context(|| format!("creating {}", db.display()))?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        if f.exists() {
            tighten(&f, 0o600)?;
        }
    }
    Ok(())
}

/// Sets `path` to `mode` if it grants more than `mode` does; says so in the log.
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let was = meta.permissions().mode() & 0o777;
    if was & !mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| {
        format!(
            "{} is mode {was:o}, readable by other users; cannot tighten it to {mode:o} (run `chmod {mode:o} {}` as its owner)",
            path.display(),
            path.display()
        )
    })?;
    tracing::warn!(path = %path.display(), was = %format!("{was:o}"), now = %format!("{mode:o}"),
        "tightened permissions: other local users could read it");
    Ok(())
}

/// Refuses a TLS key that other users may read or anyone but its owner change, by the same
/// rule as `pki::check_private` (0600, or 0640 so the service's group may read a key root
/// owns): checked here first, before anything is created.
fn check_key(key: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(key).with_context(|| format!("reading {}", key.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        anyhow::bail!(
            "TLS key {} is mode {mode:o}: other users can read or change it; run `chmod 600 {}` \
             (or 640 with the service's group), and replace the key if it may have been copied",
            key.display(),
            key.display()
        );
    }
    Ok(())
}

/// Writes a secret to `path` with mode 0600, through a private temporary file and a rename,
/// so a reader never sees half a secret nor a moment of a wider mode.
pub fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The file of an SQLite URL (`sqlite://PATH?...`), if that is what it is.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_and_database_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let token = dir.join("admin.token");
        std::fs::write(&token, "sbu_x").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let db = dir.join("slicebed.db");

        secure(&dir, Some(&db), None).unwrap();

        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&token), 0o600);
        assert_eq!(mode(&db), 0o600, "created private");
        // Never loosened.
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o400)).unwrap();
        secure(&dir, Some(&db), None).unwrap();
        assert_eq!(mode(&token), 0o400);
    }

    #[test]
    fn a_key_others_can_read_is_refused_naming_the_file_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = secure(tmp.path(), None, Some(&key))
            .unwrap_err()
            .to_string();
        let want = format!("chmod 600 {}", key.display());
        assert!(e.contains(&want) && e.contains("644"), "{e}");
        for ok in [0o600, 0o640, 0o400] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(ok)).unwrap();
            secure(tmp.path(), None, Some(&key)).unwrap();
        }
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/s/slicebed.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/s/slicebed.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
    }
}
