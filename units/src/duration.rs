//! Durations made of `<number><unit>` parts (`30s`, `5m`, `1h`, `7d`, `2w`, `1d12h`), carried as
//! seconds. Whole numbers only: `1.5h` is written `1h30m`.

use crate::ParseError;

/// Seconds per duration unit, largest first (formatting relies on the order).
const DURATION_UNITS: &[(char, u64)] = &[
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

const HINT: &str = "expected a duration like 30s, 5m, 1h, 7d, 2w or 1d12h";
const TOO_LONG: &str = "duration is too long";
const NOT_POSITIVE: &str = "duration must be longer than zero";

/// Parses a duration made of `<number><unit>` parts (`30s`, `5m`, `1h`, `7d`, `2w`, `1d12h`) into seconds.
pub fn parse_duration(s: &str) -> Result<i64, ParseError> {
    let t = s.trim();
    // A sign is read only to name the problem ("-5m" is negative, not garbage).
    if let Some(rest) = t.strip_prefix('-') {
        return Err(match parse_unsigned(rest) {
            Ok(_) => ParseError::new(NOT_POSITIVE),
            Err(e) => e,
        });
    }
    let secs = parse_unsigned(t)?;
    if secs == 0 {
        return Err(ParseError::new(NOT_POSITIVE));
    }
    Ok(secs)
}

fn parse_unsigned(t: &str) -> Result<i64, ParseError> {
    if t.is_empty() {
        return Err(ParseError::new(HINT));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let scale = DURATION_UNITS
            .iter()
            .find(|(u, _)| *u == c)
            .map(|(_, s)| *s)
            .ok_or(ParseError::new(HINT))?;
        // Only digits, so a failed parse is empty (a unit without a number) or an overflow.
        let n: u64 = match digits.parse() {
            Ok(n) => n,
            Err(_) if digits.is_empty() => return Err(ParseError::new(HINT)),
            Err(_) => return Err(ParseError::new(TOO_LONG)),
        };
        digits.clear();
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or(ParseError::new(TOO_LONG))?;
    }
    if !digits.is_empty() {
        return Err(ParseError::new(format!(
            "{HINT} (a unit is missing after {digits})"
        )));
    }
    i64::try_from(total).map_err(|_| ParseError::new(TOO_LONG))
}

/// Formats seconds exactly as [`parse_duration`] reads them (`1d12h`, `90s` → `1m30s`).
pub fn format_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut rest = secs as u64;
    let mut out = String::new();
    for (unit, scale) in DURATION_UNITS {
        if rest >= *scale {
            out.push_str(&format!("{}{unit}", rest / scale));
            rest %= scale;
        }
    }
    out
}

/// Formats seconds roughly, with the two largest units and no weeks: `6d23h`, `5h12m`, `45s`.
pub fn format_duration_short(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut rest = secs as u64;
    let mut parts = Vec::new();
    for (unit, scale) in DURATION_UNITS.iter().skip(1) {
        if rest >= *scale || !parts.is_empty() {
            parts.push(format!("{}{unit}", rest / scale));
            rest %= scale;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.len() == 2 && parts[1].starts_with('0') {
        parts.pop();
    }
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_duration("1d12h"), Ok(129_600));
        for bad in [
            "0s",
            "0d0h",
            "30",
            "-5m",
            "5x",
            "h",
            "",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("30")
            .unwrap_err()
            .message()
            .contains("unit is missing"));
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert!(msg("5x").starts_with("expected a duration"));
        assert!(msg("0s").contains("longer than zero"));
        assert!(msg("-5m").contains("longer than zero"));
        assert!(msg("-5").contains("unit is missing"));
        assert!(msg("99999999999999999999w").contains("too long"));
        assert!(msg("99999999999999w").contains("too long"));
        assert!(msg("20000000000000w").contains("too long"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(129_600), "1d12h");
        assert_eq!(format_duration(90), "1m30s");
        assert_eq!(
            format_duration_short(6 * 86_400 + 23 * 3600 + 59 * 60),
            "6d23h"
        );
        assert_eq!(format_duration_short(7 * 86_400), "7d");
        assert_eq!(format_duration_short(45), "45s");
        assert_eq!(format_duration_short(3 * 3600 + 5), "3h");
        assert_eq!(format_duration_short(0), "0s");
    }

    proptest! {
        #[test]
        fn duration_round_trips(secs in 1i64..(100 * 365 * 86_400)) {
            prop_assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
    }
}
