//! Parsing and formatting of the quantities people type: CPU, memory/disk sizes and durations.
//!
//! The wire carries integers in base units (millicores, bytes, seconds), so this module is the only
//! place that understands "500m", "1.5Gi" or "1d12h". Parsers return a message naming what was
//! wrong; clap adds the flag and the value around it. They never accept zero or negative amounts.

/// Bytes per binary and decimal unit suffix, longest suffixes first so "Mi" wins over "M".
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

/// Seconds per duration unit, largest first (formatting relies on the order).
const DURATION_UNITS: &[(char, u64)] = &[
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses a CPU amount: cores (`2`, `0.5`) or millicores (`500m`) into millicores.
pub fn parse_cpu(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let millis = if let Some(m) = t.strip_suffix('m') {
        parse_scaled(m, 1).ok_or("expected cores like 0.5 or 2, or millicores like 500m")?
    } else {
        parse_scaled(t, 1000).ok_or("expected cores like 0.5 or 2, or millicores like 500m")?
    };
    positive(
        millis,
        "CPU must be more than zero (the smallest amount is 1m)",
    )
}

/// Parses a size (`256Mi`, `1Gi`, `512M`, `1048576`) into bytes.
pub fn parse_size(s: &str) -> Result<i64, String> {
    const HINT: &str = "expected a size like 256Mi, 1Gi, 512M or a number of bytes";
    let t = s.trim();
    let (number, unit) = match SIZE_UNITS.iter().find(|(suffix, _)| t.ends_with(suffix)) {
        Some((suffix, scale)) => (&t[..t.len() - suffix.len()], *scale),
        None => (t, 1),
    };
    let bytes = parse_scaled(number, unit).ok_or(HINT)?;
    positive(bytes, "size must be more than zero bytes")
}

/// Parses a duration made of `<number><unit>` parts (`30s`, `5m`, `1h`, `7d`, `2w`, `1d12h`) into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const HINT: &str = "expected a duration like 30s, 5m, 1h, 7d, 2w or 1d12h";
    let t = s.trim();
    if t.is_empty() {
        return Err(HINT.into());
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
            .ok_or(HINT)?;
        let n: u64 = digits.parse().map_err(|_| HINT)?;
        digits.clear();
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or("duration is too long")?;
    }
    if !digits.is_empty() {
        return Err(format!("{HINT} (a unit is missing after {digits})"));
    }
    let secs = i64::try_from(total).map_err(|_| "duration is too long")?;
    positive(secs, "duration must be longer than zero")
}

/// Formats millicores the way `parse_cpu` reads them: `2`, `0.5`, `0.125`.
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

/// Formats bytes exactly, with the largest binary unit that divides them (`1Gi`, `1536Mi`, `1000`).
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

/// Formats seconds exactly as `parse_duration` reads them (`1d12h`, `90s` → `1m30s`).
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

/// Parses a non-negative decimal (`12`, `0.5`, `.5`) and multiplies it by `scale`, exactly.
/// Returns None for garbage, signs, or a result that is not a whole number of base units.
fn parse_scaled(s: &str, scale: u64) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let w: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > 30 {
        return None;
    }
    let denom = 10u128.checked_pow(frac.len() as u32)?;
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scaled_frac = f.checked_mul(scale as u128)?;
    if scaled_frac % denom != 0 {
        return None;
    }
    let total = w
        .checked_mul(scale as u128)?
        .checked_add(scaled_frac / denom)?;
    i64::try_from(total).ok()
}

fn positive(v: i64, msg: &str) -> Result<i64, String> {
    if v > 0 {
        Ok(v)
    } else {
        Err(msg.into())
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
            .contains("unit is missing"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu(500), "0.5");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(125), "0.125");
        assert_eq!(format_size(256 << 20), "256Mi");
        assert_eq!(format_size(4 << 30), "4Gi");
        assert_eq!(format_size(3 << 29), "1.5Gi");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size_exact(1536 << 20), "1536Mi");
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
        fn cpu_round_trips(millis in 1i64..10_000_000) {
            prop_assert_eq!(parse_cpu(&format_cpu(millis)), Ok(millis));
            prop_assert_eq!(parse_cpu(&format!("{millis}m")), Ok(millis));
        }

        #[test]
        fn size_round_trips(bytes in 1i64..(1i64 << 52)) {
            prop_assert_eq!(parse_size(&format_size_exact(bytes)), Ok(bytes));
        }

        #[test]
        fn size_in_units_round_trips(n in 1i64..8_000, unit in 0usize..5) {
            let (suffix, scale) = SIZE_UNITS[unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n * scale as i64));
        }

        #[test]
        fn duration_round_trips(secs in 1i64..(100 * 365 * 86_400)) {
            prop_assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_cpu(&s);
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn accepted_values_are_positive(s in "[0-9.]{0,6}[mkKMGTPiwdhs]{0,2}") {
            for v in [parse_cpu(&s), parse_size(&s), parse_duration(&s)].into_iter().flatten() {
                prop_assert!(v > 0);
            }
        }
    }
}
