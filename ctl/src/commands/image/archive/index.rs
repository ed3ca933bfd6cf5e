//! First pass over an image archive: where each member's bytes sit in the file. Only the tar
//! headers are read (the data is seeked over), so indexing a multi-GiB archive costs a few reads
//! per member and memory in proportion to the number of members, never to their size. Members
//! are read later straight from the file by offset; this module never decides what they mean.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// The largest JSON member read into memory (manifests, indexes, image configs are kilobytes).
pub const MAX_JSON: u64 = 16 << 20;

/// Where a member's bytes are in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub size: u64,
}

/// The regular files of a tar archive by normalised path (no leading `./` or `/`).
#[derive(Debug)]
pub struct Index {
    pub path: PathBuf,
    members: HashMap<String, Range>,
}

impl Index {
    /// Reads the headers of the tar archive at `path`.
    pub fn build(path: &Path) -> Result<Index> {
        let shown = path.display();
        let mut file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
        let mut magic = [0u8; 4];
        let n = file
            .read(&mut magic)
            .with_context(|| format!("cannot read {shown}"))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            bail!("{shown} is gzip-compressed: decompress it first (gunzip), then push the .tar");
        }
        if n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            bail!("{shown} is zstd-compressed: decompress it first (unzstd), then push the .tar");
        }
        file.seek(SeekFrom::Start(0))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let not_tar = || format!("{shown} is not a tar archive from docker save or an OCI layout");
        for entry in archive.entries_with_seek().with_context(not_tar)? {
            let entry = entry.with_context(not_tar)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().with_context(not_tar)?;
            let name = normalise(&name.to_string_lossy());
            let range = Range {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            members.insert(name, range);
        }
        if members.is_empty() {
            bail!("{}", not_tar());
        }
        Ok(Index {
            path: path.to_path_buf(),
            members,
        })
    }

    /// The member at `name`, if any.
    pub fn get(&self, name: &str) -> Option<Range> {
        self.members.get(&normalise(name)).copied()
    }

    /// Whether the archive holds `name`.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The whole member `name` (at most [`MAX_JSON`] bytes).
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let range = self
            .get(name)
            .with_context(|| format!("{} has no {name}", self.path.display()))?;
        if range.size > MAX_JSON {
            bail!(
                "{name} in {} is {} bytes, more than a manifest or config can be",
                self.path.display(),
                range.size
            );
        }
        let mut buf = Vec::with_capacity(range.size as usize);
        self.open(range)?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// A reader of exactly the bytes of `range`.
    pub fn open(&self, range: Range) -> io::Result<io::Take<File>> {
        open_range(&self.path, range)
    }
}

/// Opens `path` positioned at `range.offset`, limited to `range.size` bytes.
pub fn open_range(path: &Path, range: Range) -> io::Result<io::Take<File>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(range.offset))?;
    Ok(f.take(range.size))
}

fn normalise(name: &str) -> String {
    let mut s = name;
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            return s.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(members: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    #[test]
    fn finds_members_by_offset() {
        let f = archive(&[("./a.json", b"{}"), ("dir/layer.tar", b"hello world")]);
        let idx = Index::build(f.path()).unwrap();
        assert_eq!(idx.read_small("a.json").unwrap(), b"{}");
        let mut s = String::new();
        idx.open(idx.get("dir/layer.tar").unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello world");
        assert!(!idx.has("missing"));
    }

    #[test]
    fn refuses_compressed_and_non_tar_files() {
        let gz = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(gz.path(), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let e = Index::build(gz.path()).unwrap_err().to_string();
        assert!(e.contains("gzip-compressed"), "{e}");
        let txt = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(txt.path(), b"not an archive").unwrap();
        let e = format!("{:#}", Index::build(txt.path()).unwrap_err());
        assert!(e.contains("not a tar archive"), "{e}");
    }
}
