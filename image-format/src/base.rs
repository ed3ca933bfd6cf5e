//! The project's base image `slicebed/base:latest`, built without any registry from a static
//! busybox (Debian's busybox-static). The build is deterministic — fixed times, owners and
//! order, keys sorted — so the service's store and every node that builds it from the same
//! busybox agree on its digest. It must never pull or touch a network.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{ImageConfig, Manifest, RootFs};

/// Repository name of the base image.
pub const NAME: &str = "slicebed/base";
/// Its tag.
pub const TAG: &str = "latest";
/// Where a static busybox is looked for (Debian's busybox-static installs both).
pub const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// The three blobs of the base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The one layer (an uncompressed tar).
    pub layer: Vec<u8>,
    /// The OCI config JSON.
    pub config: Vec<u8>,
    /// The OCI manifest JSON; its digest is the image digest.
    pub manifest: Vec<u8>,
}

impl BaseImage {
    /// The image digest (of the manifest).
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// Whether `bytes` are an ELF executable without a program interpreter (statically linked).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return false; // not ELF, or not little-endian
    }
    let wide = bytes[4] == 2;
    let rd = |at: usize, n: usize| -> Option<u64> {
        let s = bytes.get(at..at + n)?;
        let mut v = 0u64;
        for (i, b) in s.iter().enumerate() {
            v |= (*b as u64) << (8 * i);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    let (Some(off), Some(size), Some(num)) = (phoff, phentsize, phnum) else {
        return false;
    };
    (0..num).all(|i| {
        let at = (off + i * size) as usize;
        // PT_INTERP = 3: a dynamic loader is named, so the binary is not static.
        rd(at, 4).is_some_and(|t| t != 3)
    })
}

/// Finds a statically linked busybox; its path and bytes.
pub fn find_static_busybox() -> Option<(PathBuf, Vec<u8>)> {
    BUSYBOX_CANDIDATES.iter().find_map(|c| {
        let bytes = std::fs::read(c).ok()?;
        is_static_elf(&bytes).then(|| (PathBuf::from(c), bytes))
    })
}

/// Applet names of the busybox at `path` (`busybox --list`), sorted; at least `sh`.
pub fn applets(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::process::Command::new(path)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| !n.is_empty() && n != "busybox" && !n.contains('/'));
    names.push("sh".into());
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

/// The root file system as an uncompressed tar; the same bytes for the same inputs.
pub fn rootfs_tar(busybox: &[u8], applets: &[String]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let ok = |r: std::io::Result<()>| r.expect("writing a tar into memory");
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("var", 0o755),
    ] {
        ok(b.append_data(
            &mut header(tar::EntryType::Directory, mode, 0),
            dir,
            std::io::empty(),
        ));
    }
    for (link, target) in [
        ("sbin", "bin"),
        ("usr/bin", "../bin"),
        ("usr/sbin", "../bin"),
    ] {
        ok(b.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), link, target));
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    ok(b.append_data(&mut h, "bin/busybox", busybox));
    for applet in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        ok(b.append_link(&mut h, format!("bin/{applet}"), "busybox"));
    }
    for (path, text) in [("etc/group", GROUP), ("etc/passwd", PASSWD)] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        ok(b.append_data(&mut h, path, text.as_bytes()));
    }
    b.into_inner().expect("finishing a tar in memory")
}

/// The OCI architecture name of the machine this runs on.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// Builds the base image from a busybox binary and its applet names.
pub fn build(busybox: &[u8], applets: &[String]) -> BaseImage {
    let layer = rootfs_tar(busybox, applets);
    let layer_digest = Digest::of(&layer);
    let config = ImageConfig {
        created: Some("1970-01-01T00:00:00Z".into()),
        architecture: oci_arch().into(),
        os: "linux".into(),
        config: serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer_digest.clone()],
        },
    };
    let config = serde_json::to_vec(&config).expect("a config always serialises");
    let manifest = Manifest::new(
        (Digest::of(&config), config.len() as u64),
        &[(layer_digest, layer.len() as u64)],
    )
    .to_bytes();
    BaseImage {
        layer,
        config,
        manifest,
    }
}

/// Builds the base image from the host's static busybox, if there is one.
pub fn build_from_host() -> Option<BaseImage> {
    let (path, bytes) = find_static_busybox()?;
    Some(build(&bytes, &applets(&path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_consistent() {
        let a = build(b"\x7fELF fake", &["ls".into(), "sh".into()]);
        let b = build(b"\x7fELF fake", &["ls".into(), "sh".into()]);
        assert_eq!(a.digest(), b.digest());
        let m = Manifest::parse(&a.manifest).unwrap();
        m.check_config(&a.config).unwrap();
        assert_eq!(m.layers[0].digest, Digest::of(&a.layer));
        let c = build(b"\x7fELF other", &["ls".into(), "sh".into()]);
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn layout_has_a_shell() {
        let img = build(b"\x7fELF fake", &["sh".into()]);
        let mut a = tar::Archive::new(img.layer.as_slice());
        let paths: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        for p in ["bin/sh", "bin/busybox", "etc/passwd", "tmp", "proc"] {
            assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn static_elf_check() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(sh) = std::fs::read("/bin/sh") {
            // A distribution's /bin/sh is dynamically linked.
            assert!(!is_static_elf(&sh));
        }
        if let Some((_, bb)) = find_static_busybox() {
            assert!(is_static_elf(&bb));
        }
    }
}
