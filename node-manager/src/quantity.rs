//! Parsing of the node-specific values accepted on the command line (`30000-30099`, `k=v`).
//!
//! CPU and sizes (`2`, `1500m`, `4Gi`) are read and printed by `slicebed-units`, shared with
//! slicectl so both accept the same forms. Only the CLI parses these; everything past it speaks
//! integers and maps, like the proto does.

use std::collections::BTreeMap;

use crate::domain::PortRange;

/// A port range or label that could not be parsed; the message says what was expected.
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
