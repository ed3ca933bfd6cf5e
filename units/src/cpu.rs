//! CPU amounts: cores (`2`, `0.5`) or millicores (`500m`), carried as millicores.

use crate::decimal::{positive_amount, Messages};
use crate::ParseError;

const MESSAGES: Messages = Messages {
    hint: "expected cores like 0.5 or 2, or millicores like 500m",
    not_whole: "CPU is counted in whole millicores (the smallest amount is 1m)",
    too_large: "CPU amount is too large",
    not_positive: "CPU must be more than zero (the smallest amount is 1m)",
};

/// Parses a CPU amount: cores (`2`, `0.5`) or millicores (`500m`) into millicores.
pub fn parse_cpu(s: &str) -> Result<i64, ParseError> {
    let t = s.trim();
    match t.strip_suffix('m') {
        Some(millis) => positive_amount(millis, 1, &MESSAGES),
        None => positive_amount(t, 1000, &MESSAGES),
    }
}

/// Formats millicores the way [`parse_cpu`] reads them: `2`, `0.5`, `0.125`.
pub fn format_cpu(millis: i64) -> String {
    let sign = if millis < 0 { "-" } else { "" };
    let m = millis.unsigned_abs();
    let (whole, frac) = (m / 1000, m % 1000);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:03}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu(".25"), Ok(250));
        assert_eq!(parse_cpu("1.0"), Ok(1000));
        for bad in [
            "0", "0m", "-1", "abc", "", "1.", "0.0005", "1.5m", "1e3", "1 m", "m",
        ] {
            assert!(parse_cpu(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// The forms `node-manager enroll --cpu` has always taken.
    #[test]
    fn enroll_cpu_flags() {
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("1500m"), Ok(1500));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("two").is_err());
        assert!(parse_cpu("1.5m").is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |s: &str| parse_cpu(s).unwrap_err().to_string();
        assert!(msg("two").starts_with("expected cores"));
        assert!(msg("0").contains("more than zero"));
        assert!(msg("-1").contains("more than zero"));
        assert!(msg("-500m").contains("more than zero"));
        assert!(msg("0.0005").contains("whole millicores"));
        assert!(msg("1.5m").contains("whole millicores"));
        assert!(msg("99999999999999999").contains("too large"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu(500), "0.5");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(125), "0.125");
    }

    proptest! {
        #[test]
        fn cpu_round_trips(millis in 1i64..10_000_000) {
            prop_assert_eq!(parse_cpu(&format_cpu(millis)), Ok(millis));
            prop_assert_eq!(parse_cpu(&format!("{millis}m")), Ok(millis));
        }
    }
}
