//! Parsing of the human quantities accepted on the command line (`2`, `1500m`, `4Gi`,
//! `30000-30099`, `k=v`) into the base units of the wire contract (millicores, bytes, ports).
//!
//! Only the CLI parses quantities; everything past it speaks integers, like the proto does.

use std::collections::BTreeMap;

use crate::domain::PortRange;

/// A quantity that could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct QuantityError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

fn err(what: &'static str, input: &str, reason: &'static str) -> QuantityError {
    QuantityError {
        what,
        input: input.to_string(),
        reason,
    }
}

/// CPU as cores (`2`, `0.5`) or millicores (`1500m`) → millicores.
pub fn parse_cpu(input: &str) -> Result<i64, QuantityError> {
    const WHAT: &str = "cpu quantity";
    let s = input.trim();
    let millis = if let Some(m) = s.strip_suffix('m') {
        m.parse::<i64>().map_err(|_| {
            err(
                WHAT,
                input,
                "expected cores like 2 or millicores like 1500m",
            )
        })?
    } else {
        let cores: f64 = s.parse().map_err(|_| {
            err(
                WHAT,
                input,
                "expected cores like 2 or millicores like 1500m",
            )
        })?;
        if !cores.is_finite() {
            return Err(err(WHAT, input, "not a finite number"));
        }
        (cores * 1000.0).round() as i64
    };
    if millis <= 0 {
        return Err(err(WHAT, input, "must be positive"));
    }
    Ok(millis)
}

/// Bytes with an optional binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`) suffix.
pub fn parse_bytes(input: &str) -> Result<i64, QuantityError> {
    const WHAT: &str = "byte quantity";
    const UNITS: [(&str, i64); 9] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let s = input.trim();
    let (digits, mult) = UNITS
        .iter()
        .find_map(|(suffix, mult)| s.strip_suffix(suffix).map(|d| (d, *mult)))
        .unwrap_or((s, 1));
    let n: i64 = digits.parse().map_err(|_| {
        err(
            WHAT,
            input,
            "expected an integer with an optional unit like 512Mi or 4Gi",
        )
    })?;
    if n <= 0 {
        return Err(err(WHAT, input, "must be positive"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| err(WHAT, input, "too large"))
}

/// Formats bytes the way a researcher wrote them (`256Mi`, `1Gi`), falling back to bytes.
pub fn format_bytes(bytes: i64) -> String {
    for (suffix, mult) in [
        ("Ti", 1i64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= mult && bytes % mult == 0 {
            return format!("{}{suffix}", bytes / mult);
        }
    }
    format!("{bytes}")
}

/// An inclusive port range `first-last`.
pub fn parse_port_range(input: &str) -> Result<PortRange, QuantityError> {
    const WHAT: &str = "port range";
    let (a, b) = input
        .trim()
        .split_once('-')
        .ok_or_else(|| err(WHAT, input, "expected FIRST-LAST like 30000-30099"))?;
    let first: u16 = a
        .trim()
        .parse()
        .map_err(|_| err(WHAT, input, "ports are 1-65535"))?;
    let last: u16 = b
        .trim()
        .parse()
        .map_err(|_| err(WHAT, input, "ports are 1-65535"))?;
    if first == 0 || first > last {
        return Err(err(WHAT, input, "first must be between 1 and last"));
    }
    Ok(PortRange { first, last })
}

/// A `key=value` label.
pub fn parse_label(input: &str) -> Result<(String, String), QuantityError> {
    let (k, v) = input
        .split_once('=')
        .ok_or_else(|| err("label", input, "expected key=value"))?;
    if k.is_empty() {
        return Err(err("label", input, "empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Collects `key=value` labels; a later duplicate key wins.
pub fn labels_from(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("1500m"), Ok(1500));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("two").is_err());
        assert!(parse_cpu("1.5m").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("4Gi"), Ok(4 << 30));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("2G"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("20Gi"), Ok(20 << 30));
        assert!(parse_bytes("4GB").is_err());
        assert!(parse_bytes("Gi").is_err());
        assert!(parse_bytes("0Mi").is_err());
        assert!(parse_bytes("99999999999Ti").is_err());
    }

    #[test]
    fn bytes_round_trip_format() {
        assert_eq!(format_bytes(256 << 20), "256Mi");
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(1536 << 20), "1536Mi");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            parse_port_range("30000-30099"),
            Ok(PortRange {
                first: 30000,
                last: 30099
            })
        );
        assert_eq!(
            parse_port_range("80-80"),
            Ok(PortRange {
                first: 80,
                last: 80
            })
        );
        assert!(parse_port_range("30099-30000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("30000").is_err());
        assert!(parse_port_range("1-70000").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("zone=a"), Ok(("zone".into(), "a".into())));
        assert_eq!(parse_label("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=v").is_err());
    }
}
