//! Output of many slivers on one terminal: each line gets its sliver's prefix, `[2 node-mit/mit] `.
//! Chunks arrive cut anywhere, so each sliver's stdout and stderr keep their unfinished line until
//! its newline comes (or the call ends); lines from different slivers never interleave mid-line.

use std::collections::HashMap;

/// Which of a command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// An unfinished line longer than this is printed as if it ended, so that a sliver writing
/// megabytes without a newline does not grow our memory.
const MAX_PENDING: usize = 64 * 1024;

/// Colours for prefixes, cycled by sliver; no red, which reads as an error.
const COLOURS: [u8; 5] = [36, 32, 33, 35, 34];

/// Line buffers and prefixes for a set of slivers, addressed by their position in the set.
#[derive(Debug)]
pub struct Lines {
    prefixes: HashMap<(usize, Stream), Vec<u8>>,
    pending: HashMap<(usize, Stream), Vec<u8>>,
}

impl Lines {
    /// Prefixes from labels (`2 node-mit/mit`), padded to one width so that output lines up.
    /// `colour_stdout`/`colour_stderr` say whether that stream is a terminal. With no labels at
    /// all (`None`), output passes through unprefixed and unbuffered.
    pub fn new(labels: Option<&[String]>, colour_stdout: bool, colour_stderr: bool) -> Self {
        let mut prefixes = HashMap::new();
        if let Some(labels) = labels {
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            for (i, label) in labels.iter().enumerate() {
                let pad = " ".repeat(width - label.chars().count());
                for (stream, colour) in [
                    (Stream::Stdout, colour_stdout),
                    (Stream::Stderr, colour_stderr),
                ] {
                    let p = if colour {
                        let c = COLOURS[i % COLOURS.len()];
                        format!("\x1b[{c}m[{label}]\x1b[0m{pad} ")
                    } else {
                        format!("[{label}]{pad} ")
                    };
                    prefixes.insert((i, stream), p.into_bytes());
                }
            }
        }
        Lines {
            prefixes,
            pending: HashMap::new(),
        }
    }

    /// The bytes to print for a new chunk: every line completed by it, prefixed. The unfinished
    /// tail waits for the next chunk or [`Lines::finish`].
    pub fn push(&mut self, slot: usize, stream: Stream, data: &[u8]) -> Vec<u8> {
        let Some(prefix) = self.prefixes.get(&(slot, stream)) else {
            return data.to_vec();
        };
        let pending = self.pending.entry((slot, stream)).or_default();
        let mut out = Vec::with_capacity(data.len() + prefix.len() * 2);
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            out.extend_from_slice(prefix);
            out.append(pending);
            out.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
        }
        pending.extend_from_slice(rest);
        if pending.len() > MAX_PENDING {
            out.extend_from_slice(prefix);
            out.append(pending);
            out.push(b'\n');
        }
        out
    }

    /// The unfinished last line of a stream, prefixed and ended with a newline; empty if none.
    pub fn finish(&mut self, slot: usize, stream: Stream) -> Vec<u8> {
        match (
            self.prefixes.get(&(slot, stream)),
            self.pending.remove(&(slot, stream)),
        ) {
            (Some(prefix), Some(rest)) if !rest.is_empty() => {
                let mut out = prefix.clone();
                out.extend_from_slice(&rest);
                out.push(b'\n');
                out
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["0 node-eth/eth".into(), "12 node-mit/mit".into()]
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn lines_are_prefixed_and_aligned() {
        let mut l = Lines::new(Some(&labels()), false, false);
        assert_eq!(
            text(l.push(0, Stream::Stdout, b"a\nb\n")),
            "[0 node-eth/eth]  a\n[0 node-eth/eth]  b\n"
        );
        assert_eq!(
            text(l.push(1, Stream::Stdout, b"c\n")),
            "[12 node-mit/mit] c\n"
        );
    }

    #[test]
    fn partial_lines_wait_for_their_end_per_sliver_and_stream() {
        let mut l = Lines::new(Some(&labels()), false, false);
        assert_eq!(text(l.push(0, Stream::Stdout, b"hel")), "");
        assert_eq!(text(l.push(1, Stream::Stdout, b"other")), "");
        assert_eq!(text(l.push(0, Stream::Stderr, b"err")), "");
        assert_eq!(
            text(l.push(0, Stream::Stdout, b"lo\nwor")),
            "[0 node-eth/eth]  hello\n"
        );
        assert_eq!(text(l.finish(0, Stream::Stdout)), "[0 node-eth/eth]  wor\n");
        assert_eq!(text(l.finish(0, Stream::Stdout)), "");
        assert_eq!(text(l.finish(0, Stream::Stderr)), "[0 node-eth/eth]  err\n");
        assert_eq!(
            text(l.finish(1, Stream::Stdout)),
            "[12 node-mit/mit] other\n"
        );
        assert_eq!(text(l.finish(1, Stream::Stderr)), "");
    }

    #[test]
    fn empty_lines_keep_their_prefix() {
        let mut l = Lines::new(Some(&labels()[..1]), false, false);
        assert_eq!(
            text(l.push(0, Stream::Stdout, b"\n\n")),
            "[0 node-eth/eth] \n[0 node-eth/eth] \n"
        );
    }

    #[test]
    fn colour_only_where_asked() {
        let mut l = Lines::new(Some(&labels()[..1]), true, false);
        assert_eq!(
            text(l.push(0, Stream::Stdout, b"x\n")),
            "\x1b[36m[0 node-eth/eth]\x1b[0m x\n"
        );
        assert_eq!(
            text(l.push(0, Stream::Stderr, b"y\n")),
            "[0 node-eth/eth] y\n"
        );
    }

    #[test]
    fn without_labels_bytes_pass_through() {
        let mut l = Lines::new(None, false, false);
        assert_eq!(text(l.push(0, Stream::Stdout, b"par")), "par");
        assert_eq!(text(l.finish(0, Stream::Stdout)), "");
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut l = Lines::new(Some(&labels()[..1]), false, false);
        let out = l.push(0, Stream::Stdout, &vec![b'x'; MAX_PENDING + 1]);
        assert_eq!(out.len(), "[0 node-eth/eth] ".len() + MAX_PENDING + 2);
        assert_eq!(text(l.finish(0, Stream::Stdout)), "");
    }
}
