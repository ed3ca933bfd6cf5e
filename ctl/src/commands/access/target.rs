//! Where a `cp` argument points: `SLICE:PATH` (every sliver), `SLICE/INDEX:PATH` (one), or a
//! local path. Anything that does not start with a slice name (a DNS label) and a colon is local,
//! so `./a:b`, `/tmp/x:y` and `notes.txt` stay on this machine.

use std::path::PathBuf;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine.
    Local(PathBuf),
    /// A path in a slice's slivers: all of them, or the one with `index`.
    Remote {
        slice: String,
        index: Option<u32>,
        path: String,
    },
}

impl Location {
    /// Reads a command-line argument.
    pub fn parse(s: &str) -> Location {
        let local = || Location::Local(PathBuf::from(s));
        let Some((head, path)) = s.split_once(':') else {
            return local();
        };
        let (slice, index) = match head.split_once('/') {
            None => (head, None),
            Some((slice, i)) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => {
                match i.parse() {
                    Ok(i) => (slice, Some(i)),
                    Err(_) => return local(),
                }
            }
            Some(_) => return local(),
        };
        if !is_dns_label(slice) {
            return local();
        }
        Location::Remote {
            slice: slice.into(),
            index,
            path: path.into(),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(slice: &str, index: Option<u32>, path: &str) -> Location {
        Location::Remote {
            slice: slice.into(),
            index,
            path: path.into(),
        }
    }

    fn local(p: &str) -> Location {
        Location::Local(p.into())
    }

    #[test]
    fn slices_with_and_without_index() {
        assert_eq!(Location::parse("exp:/tmp"), remote("exp", None, "/tmp"));
        assert_eq!(
            Location::parse("exp/2:/data/out.txt"),
            remote("exp", Some(2), "/data/out.txt")
        );
        assert_eq!(Location::parse("exp-1:"), remote("exp-1", None, ""));
        // Colons after the first belong to the path.
        assert_eq!(Location::parse("exp:/a:b"), remote("exp", None, "/a:b"));
    }

    #[test]
    fn everything_else_is_local() {
        for s in [
            "notes.txt",
            "./exp:/tmp",
            "/tmp/exp:x",
            "dir/file:x",
            "Exp:/tmp",
            "exp/x:/tmp",
            "exp/:/tmp",
            "exp/99999999999:/tmp",
            "-exp:/tmp",
            ":x",
            ".",
        ] {
            assert_eq!(Location::parse(s), local(s), "{s}");
        }
    }
}
