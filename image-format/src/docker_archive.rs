//! The archive a node hands to `docker load`: the classic `docker save` layout
//! (`manifest.json`, `<config-hex>.json`, `<layer-hex>/layer.tar`), which every Docker engine
//! loads. Written as a stream: layers are copied from readers, never held whole in memory.
//!
//! Every layer's bytes are hashed while copied and the write fails with
//! [`Error::Mismatch`] if they are not the digest the manifest names, so a caller that streams
//! the result into `docker load` aborts the load instead of handing over foreign bytes (nodes
//! still verify each blob when it arrives, before caching it).

use std::collections::HashSet;
use std::io::{Read, Write};

use serde::Serialize;

use crate::digest::{Digest, Sha256Writer};
use crate::error::{Error, Result};

/// One layer to write: its digest (= diff_id), size and bytes.
pub struct Layer<R> {
    pub digest: Digest,
    pub size: u64,
    pub reader: R,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: &'a [String],
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes a docker-load archive of `config` and `layers` to `out`, tagged `repo_tags`
/// (e.g. `["alice/iperf:sha256-<hex>"]`; may be empty). Returns `out`.
pub fn write<W: Write, R: Read>(
    out: W,
    config: &[u8],
    layers: impl IntoIterator<Item = Layer<R>>,
    repo_tags: &[String],
) -> Result<W> {
    let config_digest = Digest::of(config);
    let mut b = tar::Builder::new(out);
    let config_name = format!("{}.json", config_digest.hex());
    b.append_data(
        &mut header(config.len() as u64, 0o644),
        &config_name,
        config,
    )?;
    let mut names = Vec::new();
    let mut written = HashSet::new();
    for layer in layers {
        let name = format!("{}/layer.tar", layer.digest.hex());
        names.push(name.clone());
        if !written.insert(layer.digest.clone()) {
            continue;
        }
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_mtime(0);
        dir.set_size(0);
        b.append_data(&mut dir, layer.digest.hex(), std::io::empty())?;
        let mut hashing = HashingReader {
            inner: layer.reader.take(layer.size),
            hash: Sha256Writer::new(std::io::sink()),
        };
        b.append_data(&mut header(layer.size, 0o644), &name, &mut hashing)?;
        let got = hashing.hash.written();
        let (actual, _) = hashing.hash.finish();
        if got != layer.size || actual != layer.digest {
            return Err(Error::Mismatch {
                expected: layer.digest.to_string(),
                actual: format!("{actual} ({got} of {} bytes)", layer.size),
            });
        }
    }
    let manifest = serde_json::to_vec(&[Entry {
        config: config_name,
        repo_tags,
        layers: names,
    }])
    .map_err(|e| Error::Io(e.to_string()))?;
    b.append_data(
        &mut header(manifest.len() as u64, 0o644),
        "manifest.json",
        manifest.as_slice(),
    )?;
    Ok(b.into_inner()?)
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256Writer<std::io::Sink>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_what_docker_load_reads() {
        let l1 = b"first layer".to_vec();
        let l2 = b"second".to_vec();
        let layers = [&l1, &l2, &l1].map(|l| Layer {
            digest: Digest::of(l),
            size: l.len() as u64,
            reader: l.as_slice(),
        });
        let out = write(Vec::new(), b"{\"cfg\":1}", layers, &["a/b:t".into()]).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let mut files = std::collections::BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            files.insert(p, v);
        }
        let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let cfg = format!("{}.json", Digest::of(b"{\"cfg\":1}").hex());
        assert_eq!(m[0]["Config"], cfg.as_str());
        assert_eq!(m[0]["RepoTags"][0], "a/b:t");
        let layers: Vec<String> = serde_json::from_value(m[0]["Layers"].clone()).unwrap();
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0], layers[2]);
        assert_eq!(files[&layers[1]], l2);
        assert_eq!(files[&cfg], b"{\"cfg\":1}");
    }

    #[test]
    fn foreign_bytes_fail_the_write() {
        let good = b"layer".to_vec();
        let layer = Layer {
            digest: Digest::of(&good),
            size: 5,
            reader: &b"LAYER"[..],
        };
        let e = write(Vec::new(), b"{}", [layer], &[]).unwrap_err();
        assert!(matches!(e, Error::Mismatch { .. }), "{e}");
        let short = Layer {
            digest: Digest::of(&good),
            size: 5,
            reader: &b"lay"[..],
        };
        assert!(write(Vec::new(), b"{}", [short], &[]).is_err());
    }
}
