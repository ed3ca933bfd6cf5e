//! What a backend can do, and the byte streams of researcher access (exec, logs, copy) in the
//! node manager's own terms. Backends translate their engine's types into these; nothing here
//! may name a type of an engine or of its client library.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use super::Result;

/// What a backend supports. The agent checks these before asking, and tells researchers and
/// the service what is missing instead of failing the same call on every pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Freezing and thawing slivers (owner reclaim).
    pub pause: bool,
    /// A network of its own per slice on the node.
    pub slice_networks: bool,
    /// Running commands in a sliver (exec sessions, shells).
    pub exec: bool,
    /// Reading a sliver's log.
    pub logs: bool,
    /// Copying tar streams into and out of a sliver.
    pub copy: bool,
    /// Slivers are kept off the host and off other slices' published ports (firewall rules
    /// per slice network). A backend without it runs slivers unisolated only when told to.
    pub isolation: bool,
    /// Measuring what slivers write to their own file systems (the node manager stops those
    /// over their disk limit).
    pub disk_usage: bool,
}

impl Capabilities {
    /// Everything.
    pub const ALL: Capabilities = Capabilities {
        pause: true,
        slice_networks: true,
        exec: true,
        logs: true,
        copy: true,
        isolation: true,
        disk_usage: true,
    };
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A command to run in a sliver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecSpec {
    /// Program and arguments; never empty.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Whether the process reads stdin.
    pub stdin: bool,
    /// Whether it runs on a terminal (stdout and stderr merged).
    pub tty: bool,
    /// The terminal's size at start, if known.
    pub size: Option<TermSize>,
}

/// A chunk a process (or a log) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output (or the terminal).
    Stdout(Bytes),
    /// Standard error.
    Stderr(Bytes),
}

/// Which part of a log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsSpec {
    /// The last N lines; `None` for the whole log.
    pub tail: Option<u32>,
    /// Keep streaming new lines until the sliver stops.
    pub follow: bool,
}

/// Ends an exec's process tree. Fires at most once: on [`Killer::kill`] or, unless disarmed,
/// when dropped, so an aborted session never leaves its process running.
pub struct Killer(Option<Box<dyn FnOnce() -> usize + Send + Sync>>);

impl Killer {
    /// A killer running `kill`, which returns how many processes it signalled.
    pub fn new(kill: impl FnOnce() -> usize + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(kill)))
    }

    /// A killer that can do nothing (the process cannot be reached from here).
    pub fn none() -> Self {
        Self(None)
    }

    /// Whether there is a process to kill.
    pub fn armed(&self) -> bool {
        self.0.is_some()
    }

    /// Kills now; returns how many processes were signalled (0 if already done or none).
    pub fn kill(&mut self) -> usize {
        self.0.take().map_or(0, |k| k())
    }

    /// The process ended on its own: nothing to kill any more.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl fmt::Debug for Killer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.armed() {
            "Killer(armed)"
        } else {
            "Killer(none)"
        })
    }
}

/// A started exec: its output, its stdin, and the means to end it.
pub struct ExecProcess {
    /// The backend's id for it (resize, exit code).
    pub id: String,
    /// What it writes, until it closes its output.
    pub output: BoxStream<'static, Result<Output>>,
    /// Its standard input; shutting it down is end-of-input.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Ends it and everything it started.
    pub killer: Killer,
}
