//! The base image `slicebed/base:latest`, built on the node without any registry: a root file
//! system holding a static busybox and its applets, imported through the backend
//! ([`Runtime::import_image`]). Building it is backend-neutral; it must never pull: no
//! registry is reachable from a testbed node.

use std::path::{Path, PathBuf};

use crate::elf::check_static;
use crate::error::{Error, Result};
use crate::runtime::{ImageImport, Runtime};

/// Tag of the base image.
pub const DEFAULT_TAG: &str = "slicebed/base:latest";
/// Where a static busybox is looked for (Debian's busybox-static installs both).
pub const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The tag existed; nothing was done.
    AlreadyPresent,
    /// The image was built and imported.
    Imported,
}

/// Finds a statically linked busybox; returns its path and bytes.
pub fn find_static_busybox() -> Result<(PathBuf, Vec<u8>)> {
    for candidate in BUSYBOX_CANDIDATES {
        let Ok(bytes) = std::fs::read(candidate) else {
            continue;
        };
        match check_static(&bytes) {
            Ok(()) => return Ok((PathBuf::from(candidate), bytes)),
            Err(e) => tracing::debug!(path = candidate, error = %e, "busybox candidate not usable"),
        }
    }
    Err(Error::Image(
        "no static busybox found; install Debian's busybox-static (apt-get install busybox-static)"
            .into(),
    ))
}

/// Applet names of the busybox at `path` (`busybox --list`); at least `sh`.
pub fn applets(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::process::Command::new(path)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| !n.is_empty() && n != "busybox" && !n.contains('/'));
    if !names.iter().any(|n| n == "sh") {
        names.push("sh".into());
    }
    names.sort();
    names.dedup();
    names
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The root file system as a tar archive.
pub fn rootfs_tar(busybox: &[u8], applets: &[String]) -> Result<Vec<u8>> {
    let werr = |e: std::io::Error| Error::Image(format!("building the root file system: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("root", 0o700),
        ("usr", 0o755),
        ("var", 0o755),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, dir, std::io::empty()).map_err(werr)?;
    }
    // Applets live in /bin; the usual other places point there so `#!/usr/bin/env` works.
    for (link, target) in [
        ("sbin", "bin"),
        ("usr/bin", "../bin"),
        ("usr/sbin", "../bin"),
    ] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, link, target).map_err(werr)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox)
        .map_err(werr)?;
    for applet in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .map_err(werr)?;
    }
    for (path, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes()).map_err(werr)?;
    }
    b.into_inner().map_err(werr)
}

/// Whether `reference` exists in the backend.
pub async fn exists(rt: &impl Runtime, reference: &str) -> Result<bool> {
    rt.image_id(reference)
        .await
        .map(|id| id.is_some())
        .map_err(|e| Error::Image(format!("inspecting image {reference}: {e}")))
}

/// Imports `rootfs` (a tar) as `reference`, with a shell as its command.
pub async fn import(rt: &impl Runtime, reference: &str, rootfs: Vec<u8>) -> Result<()> {
    let image = ImageImport {
        reference: reference.to_string(),
        rootfs: rootfs.into(),
        command: vec!["/bin/sh".into()],
        env: vec![("PATH".into(), "/bin".into())],
    };
    rt.import_image(image)
        .await
        .map_err(|e| Error::Image(format!("importing {reference}: {e}")))
}

/// Builds and imports the base image unless `reference` exists (or `force`).
pub async fn ensure(rt: &impl Runtime, reference: &str, force: bool) -> Result<Outcome> {
    let old_id = rt.image_id(reference).await.ok().flatten();
    if !force && exists(rt, reference).await? {
        return Ok(Outcome::AlreadyPresent);
    }
    let (path, busybox) = find_static_busybox()?;
    let applets = applets(&path);
    tracing::info!(busybox = %path.display(), applets = applets.len(), "building base image");
    let rootfs = rootfs_tar(&busybox, &applets)?;
    import(rt, reference, rootfs).await?;
    // A rebuild leaves the old image untagged; drop it unless a container still uses it.
    let new_id = rt.image_id(reference).await.ok().flatten();
    if let Some(old) = old_id.filter(|old| Some(old) != new_id.as_ref()) {
        if let Err(e) = rt.remove_image(&old).await {
            tracing::debug!(image = %old, error = %e, "old base image kept");
        }
    }
    Ok(Outcome::Imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_layout() {
        let tar = rootfs_tar(b"\x7fELF fake", &["sh".into(), "ls".into()]).unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let mut seen = std::collections::BTreeMap::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().to_string());
            seen.insert(
                path,
                (e.header().entry_type(), link, e.header().mode().unwrap()),
            );
        }
        assert_eq!(seen["bin/sh"].1.as_deref(), Some("busybox"));
        assert_eq!(seen["bin/busybox"].2, 0o755);
        assert_eq!(seen["tmp"].2, 0o1777);
        for p in ["etc/passwd", "etc/group", "proc", "sys", "dev", "root"] {
            assert!(seen.contains_key(p), "{p} missing");
        }
    }
}
