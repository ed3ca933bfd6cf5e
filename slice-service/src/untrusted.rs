//! Text that users and nodes hand us (exec argv, node messages, failure reasons), made safe to
//! store and to print: control characters escaped, length bounded.
//!
//! A terminal escape in an event would run in the terminal of whoever reads the log, and a
//! 2 MiB argv stored verbatim grows the database and breaks every later read. This module must
//! never reject input: it only rewrites it, so that recording an action cannot fail the action.

use std::fmt::Write;

/// Longest event detail or node message kept, in bytes (before the truncation mark).
pub const DETAIL_MAX: usize = 1024;

/// Longest actor, object or action kept, in bytes.
pub const LABEL_MAX: usize = 256;

/// Characters that must not reach a terminal as themselves: C0/C1 controls and DEL, plus the
/// bidirectional overrides that make text read differently from what it is.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as a visible escape (`\n`, `\t`, `\x1b`, `\u{202e}`).
pub fn printable(s: &str) -> String {
    if !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `printable(s)` cut to at most `max` bytes on a character boundary; a cut is marked with how
/// much was left off, so nobody mistakes a truncated command line for the whole one.
pub fn bounded(s: &str, max: usize) -> String {
    // Escape only what can be kept: an escape is at most 10 bytes per input byte.
    let head = &s[..floor_boundary(s, max.saturating_add(1))];
    let mut out = printable(head);
    if out.len() <= max && head.len() == s.len() {
        return out;
    }
    out.truncate(floor_boundary(&out, max));
    let _ = write!(out, " …[truncated, {} bytes in all]", s.len());
    out
}

/// The largest index <= `i` that is a character boundary of `s`.
fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (0..=i).rev().find(|&j| s.is_char_boundary(j)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(printable("uname -a"), "uname -a");
        assert_eq!(bounded("héllo wörld", 100), "héllo wörld");
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            printable("a\u{1b}[2Jb\nc\t\u{7f}\u{9b}\u{202e}"),
            "a\\x1b[2Jb\\nc\\t\\x7f\\x9b\\u{202e}"
        );
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let s = "é".repeat(2000);
        let b = bounded(&s, DETAIL_MAX);
        assert!(b.len() < DETAIL_MAX + 64, "{}", b.len());
        assert!(b.ends_with("[truncated, 4000 bytes in all]"), "{b}");
        // Escapes count against the bound too.
        let b = bounded(&"\u{1b}".repeat(1000), 100);
        assert!(b.starts_with("\\x1b") && b.len() < 160, "{b}");
        // Exactly at the bound is not a cut.
        assert_eq!(bounded(&"x".repeat(100), 100), "x".repeat(100));
    }
}
