//! Printing results: aligned tables for people, stable JSON for scripts.
//!
//! JSON goes through the serializable views in [`view`], never through prost's own types, so the
//! wire contract can grow without changing what scripts see (snake_case keys, RFC 3339 UTC times,
//! lowercase enum names, integer quantities).

pub mod table;
pub mod view;

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

pub use table::{Fields, Table};

/// `-o table|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    // No doc comments on the variants: they would turn `--help` into a list of them.
    Table,
    Json,
}

/// Prints pretty JSON and a newline to stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    out(&format!("{text}\n"))
}

/// Writes to stdout; a closed pipe (`| head`) ends quietly instead of failing.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// Lowercase name of a proto enum value without its type prefix:
/// `SLIVER_STATE_RUNNING` → `running`, `RESTART_POLICY_ON_FAILURE` → `on_failure`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_are_lowercase_without_prefix() {
        assert_eq!(
            enum_name("SLIVER_STATE_RUNNING", "SLIVER_STATE_"),
            "running"
        );
        assert_eq!(
            enum_name("RESTART_POLICY_ON_FAILURE", "RESTART_POLICY_"),
            "on_failure"
        );
    }
}
