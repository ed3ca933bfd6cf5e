//! The local terminal of `slicectl shell`: raw mode while the shell runs, and its size. The raw
//! mode must be undone on every way out (normal end, error, panic), or the person is left with a
//! terminal that neither echoes nor ends lines; hence a guard plus a panic hook.

use std::io::{self, IsTerminal};

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};
use slicebed_proto::v1::TerminalSize;

/// Whether stdin is a terminal (and so gets raw mode and a remote pseudo-terminal).
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// The size of our terminal, from stdout or else stdin; `None` when neither is a terminal.
pub fn size() -> Option<TerminalSize> {
    let ws = tcgetwinsize(io::stdout())
        .or_else(|_| tcgetwinsize(io::stdin()))
        .ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then(|| TerminalSize {
        cols: ws.ws_col.into(),
        rows: ws.ws_row.into(),
    })
}

/// Stdin's terminal in raw mode (no echo, no line editing, Ctrl-C as a byte) until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Switches stdin's terminal to raw mode. A panic after this restores it too: the crate's
    /// panic hook exits the process, so no destructor would run.
    pub fn enter() -> io::Result<Self> {
        let saved = tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        let on_panic = saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore(&on_panic);
            previous(info);
        }));
        tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore(&self.saved);
    }
}

fn restore(saved: &Termios) {
    let _ = tcsetattr(io::stdin(), OptionalActions::Now, saved);
}
