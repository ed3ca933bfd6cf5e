//! Memory and disk sizes: binary (`256Mi`, `1.5Gi`) or decimal (`512M`) units, or plain bytes.

use crate::decimal::{positive_amount, Messages};
use crate::ParseError;

/// Bytes per unit suffix. No suffix ends with another, so the order does not matter to parsing;
/// the formatters rely on the first five being the binary units, smallest first.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
];

const MESSAGES: Messages = Messages {
    hint: "expected a size like 256Mi, 1Gi, 512M or a number of bytes",
    not_whole: "size must come to a whole number of bytes",
    too_large: "size is too large",
    not_positive: "size must be more than zero bytes",
};

/// Parses a size (`256Mi`, `1Gi`, `1.5Gi`, `512M`, `1048576`) into bytes.
pub fn parse_size(s: &str) -> Result<i64, ParseError> {
    let t = s.trim();
    let (number, scale) = SIZE_UNITS
        .iter()
        .find_map(|(suffix, scale)| t.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((t, 1));
    positive_amount(number, scale, &MESSAGES)
}

/// Formats bytes for people: the largest binary unit with at most one decimal (`256Mi`, `1.5Gi`).
/// Approximate by design; use [`format_size_exact`] when the text must parse back to the same value.
pub fn format_size(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "" };
    let b = bytes.unsigned_abs();
    for (suffix, scale) in SIZE_UNITS[..5].iter().rev() {
        if b >= *scale {
            let tenths = (b * 10 + scale / 2) / scale;
            return if tenths.is_multiple_of(10) {
                format!("{sign}{}{suffix}", tenths / 10)
            } else {
                format!("{sign}{}.{}{suffix}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{sign}{b}")
}

/// Formats bytes exactly, with the largest binary unit that divides them (`1Gi`, `1536Mi`, `1000`),
/// as people write limits; [`parse_size`] reads it back to the same value.
pub fn format_size_exact(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "" };
    let b = bytes.unsigned_abs();
    for (suffix, scale) in SIZE_UNITS[..5].iter().rev() {
        if b != 0 && b.is_multiple_of(*scale) {
            return format!("{sign}{}{suffix}", b / scale);
        }
    }
    format!("{sign}{b}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256Mi"), Ok(256 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_size("512M"), Ok(512_000_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("2k"), Ok(2000));
        for bad in ["0", "0Gi", "-1Gi", "1Gb", "Gi", "1.5", "lots", "", "1 Gi x"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// The forms `node-manager enroll --memory/--disk` has always taken.
    #[test]
    fn enroll_size_flags() {
        assert_eq!(parse_size("4Gi"), Ok(4 << 30));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("20Gi"), Ok(20 << 30));
        assert!(parse_size("4GB").is_err());
        assert!(parse_size("Gi").is_err());
        assert!(parse_size("0Mi").is_err());
        assert!(parse_size("99999999999Ti").is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |s: &str| parse_size(s).unwrap_err().to_string();
        assert!(msg("4GB").starts_with("expected a size"));
        assert!(msg("0Mi").contains("more than zero"));
        assert!(msg("-1Gi").contains("more than zero"));
        assert!(msg("1.5").contains("whole number of bytes"));
        assert!(msg("99999999999Ti").contains("too large"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(256 << 20), "256Mi");
        assert_eq!(format_size(4 << 30), "4Gi");
        assert_eq!(format_size(3 << 29), "1.5Gi");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size_exact(1536 << 20), "1536Mi");
    }

    /// What node-manager's reports show, e.g. "OOM-killed (memory limit 256Mi)".
    #[test]
    fn exact_format_keeps_the_written_unit() {
        assert_eq!(format_size_exact(256 << 20), "256Mi");
        assert_eq!(format_size_exact(1 << 30), "1Gi");
        assert_eq!(format_size_exact(1536 << 20), "1536Mi");
        assert_eq!(format_size_exact(1000), "1000");
    }

    proptest! {
        #[test]
        fn size_round_trips(bytes in 1i64..(1i64 << 52)) {
            prop_assert_eq!(parse_size(&format_size_exact(bytes)), Ok(bytes));
        }

        #[test]
        fn size_in_units_round_trips(n in 1i64..8_000, unit in 0usize..5) {
            let (suffix, scale) = SIZE_UNITS[unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n * scale as i64));
        }
    }
}
