//! Parsing and formatting of the quantities people type: CPU (`500m`, `1.5`), memory and disk
//! sizes (`64Mi`, `1.5Gi`, `512M`, plain bytes) and durations (`30s`, `1d12h`).
//!
//! The wire carries integers in base units (millicores, bytes, seconds), so this crate is the only
//! place that understands the human forms; `slicectl` and `node-manager` both read their flags
//! with it. Parsers are exact: they never round, never accept zero or negative amounts, and
//! return a [`ParseError`] whose message names what is wrong (clap adds the flag and the value
//! around it). Formatters write what the parsers read back, except where a doc says "roughly".

mod cpu;
mod decimal;
mod duration;
mod resources;
mod size;

use std::borrow::Cow;
use std::fmt;

pub use cpu::{format_cpu, parse_cpu};
pub use duration::{format_duration, format_duration_short, parse_duration};
pub use resources::Resources;
pub use size::{format_size, format_size_exact, parse_size};

/// A quantity that could not be read; the message says what is wrong or what was expected.
///
/// It implements [`std::error::Error`], so it works both as a clap `value_parser` error and
/// with `?` into `anyhow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(Cow<'static, str>);

impl ParseError {
    fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self(message.into())
    }

    /// The message alone, as shown to people.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_cpu(&s);
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn accepted_values_are_positive(s in "-?[0-9.]{0,6}[mkKMGTPiwdhs]{0,2}") {
            for v in [parse_cpu(&s), parse_size(&s), parse_duration(&s)].into_iter().flatten() {
                prop_assert!(v > 0);
            }
        }
    }
}
