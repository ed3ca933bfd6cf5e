//! Tar streams for `cp`, built and unpacked without ever holding an archive in memory. The tar
//! crate is blocking, the gRPC calls are async: a blocking task writes the archive into a
//! [`ChunkWriter`] that fills a bounded channel in [`CHUNK`]-sized pieces, and the extractor reads
//! a [`ChunkReader`] fed from the call. At most [`DEPTH`] chunks wait in a channel, so a 100 GiB
//! copy uses about a megabyte whatever the speed of either side.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use tokio::sync::mpsc;

/// Bytes per chunk (and per gRPC message; the contract allows 1 MiB).
pub const CHUNK: usize = 256 * 1024;
/// Chunks a channel holds before the writer waits.
pub const DEPTH: usize = 4;

/// A piece of an archive, or the reason the archive cannot be completed.
pub type Chunk = io::Result<Vec<u8>>;

/// A bounded channel of chunks.
pub fn channel() -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(DEPTH)
}

/// `Write` into a channel, for blocking code. Fails with `BrokenPipe` once the receiver is gone.
pub struct ChunkWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    written: u64,
}

impl ChunkWriter {
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            written: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.written += chunk.len() as u64;
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the copy was abandoned"))
    }

    /// Sends what is left; returns the bytes written in all.
    pub fn finish(mut self) -> io::Result<u64> {
        self.send()?;
        Ok(self.written)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    // Chunks leave when full or at `finish`; flushing small pieces would only add messages.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Read` from a channel, for blocking code. The channel closing is the end of the stream; an
/// `Err` chunk is a read error (the call broke), so a cut archive is never taken as complete.
pub struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The name `local` gets inside the archive: its last component (`.` and `..` resolved).
pub fn root_name(local: &Path) -> io::Result<PathBuf> {
    if let Some(name) = local.file_name() {
        return Ok(name.into());
    }
    fs::canonicalize(local)?
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot copy the root directory",
            )
        })
}

/// Writes `local` (a file or a directory tree) as a tar stream with one root entry named like
/// `local`, into `tx`; returns the archive's size. Symbolic links inside a tree stay links. On
/// failure an `Err` chunk follows the last good one, so the receiver can tell.
pub fn build(local: &Path, tx: mpsc::Sender<Chunk>) -> io::Result<u64> {
    let fail = tx.clone();
    let result = (|| {
        let name = root_name(local)?;
        let mut b = tar::Builder::new(ChunkWriter::new(tx));
        b.follow_symlinks(false);
        if fs::metadata(local)?.is_dir() {
            b.append_dir_all(&name, local)?;
        } else {
            b.append_path_with_name(local, &name)?;
        }
        b.into_inner()?.finish()
    })();
    if let Err(e) = &result {
        let _ = fail.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
    }
    result
}

/// Checks before a download that `dest` can receive it: an existing directory, or a path whose
/// parent directory exists.
pub fn check_dest(dest: &Path) -> io::Result<()> {
    if dest.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dest);
    if !parent.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("directory {} does not exist", parent.display()),
        ));
    }
    Ok(())
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.into(),
        _ => PathBuf::from("."),
    }
}

/// Unpacks a tar stream like `cp -r` would copy: into `dest` when it is an existing directory,
/// otherwise as `dest` itself (the archive's root renamed; a file may be replaced). Entries that
/// would land outside the target are refused by the tar crate.
pub fn extract(reader: impl Read, dest: &Path) -> io::Result<()> {
    if dest.is_dir() {
        return tar::Archive::new(reader).unpack(dest);
    }
    check_dest(dest)?;
    // Unpack next to `dest`, then rename: the same file system, so nothing is copied twice,
    // and a half-received tree never appears under the name asked for.
    let staging = parent_of(dest).join(format!(
        ".slicectl-cp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    fs::create_dir(&staging)?;
    let result = (|| {
        tar::Archive::new(reader).unpack(&staging)?;
        let roots = fs::read_dir(&staging)?.collect::<io::Result<Vec<_>>>()?;
        match roots.as_slice() {
            [] => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the archive is empty",
            )),
            [root] => {
                if root.file_type()?.is_dir() && dest.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("cannot replace file {} with a directory", dest.display()),
                    ));
                }
                fs::rename(root.path(), dest)
            }
            // Several roots: the staging directory itself becomes `dest`.
            _ => fs::rename(&staging, dest),
        }
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use super::*;

    /// Counts bytes read, to measure how far the writer runs ahead of the reader.
    struct Counting<R>(R, Arc<AtomicU64>);

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(b)?;
            self.1.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    #[tokio::test]
    async fn ten_mib_round_trip_through_bounded_channels() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let data = pseudo_random(10 << 20);
        let file = src.path().join("big.bin");
        fs::write(&file, &data).unwrap();

        // Producer -> channel -> (the async side, as in a copy) -> channel -> extractor.
        let (tx, mut from_tar) = channel();
        let producer = tokio::task::spawn_blocking(move || build(&file, tx));
        let (to_tar, rx) = channel();
        let consumed = Arc::new(AtomicU64::new(0));
        let reader = Counting(ChunkReader::new(rx), consumed.clone());
        let out = dst.path().to_path_buf();
        let extractor = tokio::task::spawn_blocking(move || extract(reader, &out));

        let (mut relayed, mut chunks, mut ahead) = (0u64, 0, 0u64);
        while let Some(chunk) = from_tar.recv().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK);
            relayed += chunk.len() as u64;
            chunks += 1;
            ahead = ahead.max(relayed - consumed.load(Ordering::SeqCst));
            to_tar.send(Ok(chunk)).await.unwrap();
        }
        drop(to_tar);
        let size = producer.await.unwrap().unwrap();
        extractor.await.unwrap().unwrap();

        assert_eq!(size, relayed);
        assert!(chunks >= 40, "{chunks} chunks");
        // What is in flight is bounded by the channel and the reader's one chunk, not by the file.
        assert!(
            ahead <= ((DEPTH + 2) * CHUNK) as u64,
            "{ahead} bytes were relayed but not yet read"
        );
        assert!(fs::read(dst.path().join("big.bin")).unwrap() == data);
    }

    fn pipe(local: &Path, dest: &Path) -> io::Result<()> {
        let (tx, rx) = channel();
        let local = local.to_path_buf();
        let producer = std::thread::spawn(move || build(&local, tx));
        let r = extract(ChunkReader::new(rx), dest);
        producer.join().unwrap()?;
        r
    }

    #[test]
    fn directories_go_into_existing_directories_or_become_the_new_name() {
        let src = tempfile::tempdir().unwrap();
        let tree = src.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/a.txt"), "a").unwrap();
        let dst = tempfile::tempdir().unwrap();

        pipe(&tree, dst.path()).unwrap();
        assert_eq!(
            fs::read_to_string(dst.path().join("tree/sub/a.txt")).unwrap(),
            "a"
        );

        pipe(&tree, &dst.path().join("copy")).unwrap();
        assert_eq!(
            fs::read_to_string(dst.path().join("copy/sub/a.txt")).unwrap(),
            "a"
        );

        // A file may replace a file; nothing is left behind in the parent.
        fs::write(dst.path().join("b.txt"), "old").unwrap();
        pipe(&tree.join("sub/a.txt"), &dst.path().join("b.txt")).unwrap();
        assert_eq!(fs::read_to_string(dst.path().join("b.txt")).unwrap(), "a");
        let mut names: Vec<_> = fs::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["b.txt", "copy", "tree"]);

        let e = pipe(&tree, &dst.path().join("b.txt")).unwrap_err();
        assert!(e.to_string().contains("with a directory"), "{e}");
        let e = check_dest(&dst.path().join("no/such")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn a_broken_stream_is_an_error_not_a_short_file() {
        let dst = tempfile::tempdir().unwrap();
        let (tx, rx) = channel();
        let mut header = tar::Header::new_gnu();
        header.set_size(1 << 20);
        header.set_path("f").unwrap();
        header.set_cksum();
        tx.blocking_send(Ok(header.as_bytes().to_vec())).unwrap();
        tx.blocking_send(Ok(vec![1; 1000])).unwrap();
        tx.blocking_send(Err(io::Error::other("the node went away")))
            .unwrap();
        drop(tx);
        assert!(extract(ChunkReader::new(rx), &dst.path().join("f")).is_err());
        assert!(!dst.path().join("f").exists());
    }

    #[test]
    fn a_missing_source_says_so_to_the_receiver() {
        let (tx, mut rx) = channel();
        assert!(build(Path::new("/no/such/file"), tx).is_err());
        assert!(rx.blocking_recv().unwrap().is_err());
    }
}

/// Arbitrary archives from a sliver (entries named with `..`, absolute paths, symbolic and hard
/// links pointing out, corrupted or cut bytes) unpacked by `extract`: it never panics and never
/// writes outside the target, whether the target is an existing directory or a new name.
#[cfg(test)]
mod prop_tests {
    use std::collections::BTreeMap;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Stands for the absolute path of the directory outside the target, in names and links.
    const OUTSIDE: &str = "@OUT";

    #[derive(Debug, Clone)]
    enum Kind {
        File(Vec<u8>),
        Dir,
        Symlink(String),
        Hardlink(String),
    }

    fn path() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            Just(OUTSIDE.to_string()),
            "[a-z]{1,3}",
        ];
        (any::<bool>(), vec(part, 1..4)).prop_map(|(abs, parts)| {
            let p = parts.join("/");
            if abs {
                format!("/{p}")
            } else {
                p
            }
        })
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            vec(any::<u8>(), 0..64).prop_map(Kind::File),
            Just(Kind::Dir),
            prop_oneof![Just("/".to_string()), Just("..".to_string()), path()]
                .prop_map(Kind::Symlink),
            path().prop_map(Kind::Hardlink),
        ]
    }

    /// Raw header bytes: the tar crate's setters refuse `..`, a hostile sender does not.
    fn put(field: &mut [u8], s: &str) {
        let b = s.as_bytes();
        let n = b.len().min(field.len());
        field.fill(0);
        field[..n].copy_from_slice(&b[..n]);
    }

    fn archive(entries: &[(String, Kind)], outside: &Path) -> Vec<u8> {
        let out = outside.to_str().unwrap();
        let mut bytes = Vec::new();
        for (name, kind) in entries {
            let mut h = tar::Header::new_gnu();
            let data: &[u8] = match kind {
                Kind::File(d) => d,
                _ => &[],
            };
            h.set_size(data.len() as u64);
            let (t, mode) = match kind {
                Kind::File(_) => (tar::EntryType::Regular, 0o644),
                Kind::Dir => (tar::EntryType::Directory, 0o755),
                Kind::Symlink(_) => (tar::EntryType::Symlink, 0o777),
                Kind::Hardlink(_) => (tar::EntryType::Link, 0o644),
            };
            h.set_entry_type(t);
            h.set_mode(mode);
            let gnu = h.as_gnu_mut().unwrap();
            put(&mut gnu.name, &name.replace(OUTSIDE, out));
            if let Kind::Symlink(l) | Kind::Hardlink(l) = kind {
                put(&mut gnu.linkname, &l.replace(OUTSIDE, out));
            }
            h.set_cksum();
            bytes.extend_from_slice(h.as_bytes());
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        }
        bytes.extend_from_slice(&[0; 1024]);
        bytes
    }

    /// Every path under `dir` (links not followed) with the file's bytes or the link's target.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let what = if m.is_dir() {
                    todo.push(p.clone());
                    "dir".to_string()
                } else if m.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&p).unwrap().display())
                } else {
                    format!("{:?}", fs::read(&p).unwrap())
                };
                out.insert(p, what);
            }
        }
        out
    }

    /// Unpacks the archive `build` makes (given the path of a directory it must leave alone)
    /// into a fresh target, an existing directory or a new name; checks that nothing changed
    /// but the target.
    fn check(
        into_existing: bool,
        build: impl FnOnce(&Path) -> Vec<u8>,
    ) -> Result<(), TestCaseError> {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        fs::create_dir_all(outside.join("d")).unwrap();
        fs::write(outside.join("f"), "sentinel").unwrap();
        fs::write(outside.join("d/g"), "sentinel").unwrap();
        let before = snapshot(&outside);
        let dest = root.path().join("dest");
        if into_existing {
            fs::create_dir(&dest).unwrap();
        }
        let bytes = build(&outside);
        // Fed in small chunks, as a copy arrives.
        let (tx, rx) = channel();
        let feeder = std::thread::spawn(move || {
            for c in bytes.chunks(700) {
                if tx.blocking_send(Ok(c.to_vec())).is_err() {
                    break;
                }
            }
        });
        let _ = extract(ChunkReader::new(rx), &dest);
        feeder.join().unwrap();
        prop_assert_eq!(snapshot(&outside), before, "the directory outside changed");
        let mut top: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        prop_assert!(
            top == ["dest", "outside"] || (!into_existing && top == ["outside"]),
            "left next to the target: {:?}",
            top
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn hostile_entries_stay_inside_the_target(
            entries in vec((path(), kind()), 1..8),
            into_existing in any::<bool>(),
        ) {
            check(into_existing, |outside| archive(&entries, outside))?;
        }

        #[test]
        fn garbage_and_cut_archives_never_panic(
            entries in vec((path(), kind()), 0..4),
            flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            noise in vec(any::<u8>(), 0..2048),
            into_existing in any::<bool>(),
        ) {
            check(into_existing, |outside| {
                let mut bytes = archive(&entries, outside);
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes
            })?;
            check(into_existing, |_| noise)?;
        }
    }

    /// The classic escapes, each on its own, so a regression names the one that got out.
    #[test]
    fn known_escapes_are_refused() {
        let file = |n: &str| (n.to_string(), Kind::File(b"pwned".to_vec()));
        let cases: Vec<Vec<(String, Kind)>> = vec![
            vec![file("../f")],
            vec![file("a/../../f")],
            vec![file(&format!("{OUTSIDE}/f"))],
            vec![("l".into(), Kind::Symlink(OUTSIDE.into())), file("l/f")],
            vec![
                ("l".into(), Kind::Symlink("..".into())),
                file("l/outside/f"),
            ],
            vec![
                ("l".into(), Kind::Symlink(OUTSIDE.into())),
                ("l/d".into(), Kind::Dir),
                file("l/d/g"),
            ],
            vec![
                ("h".into(), Kind::Hardlink(format!("{OUTSIDE}/f"))),
                file("h"),
            ],
            vec![
                ("h".into(), Kind::Hardlink("../outside/f".into())),
                file("h"),
            ],
        ];
        for entries in cases {
            for into_existing in [true, false] {
                if let Err(e) = check(into_existing, |o| archive(&entries, o)) {
                    panic!("{entries:?} (into an existing directory: {into_existing}): {e}");
                }
            }
        }
    }
}
