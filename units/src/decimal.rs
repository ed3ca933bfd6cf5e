//! Exact decimal arithmetic shared by the CPU and size parsers: `1.5` × 2^30 is a whole number of
//! bytes, `0.0005` cores is not a whole number of millicores. No floats, so nothing is rounded.

use crate::ParseError;

/// What a parser says for each way an amount can be wrong.
pub(crate) struct Messages {
    /// Not a number at all: shows the accepted forms.
    pub hint: &'static str,
    /// A number, but finer than the base unit.
    pub not_whole: &'static str,
    /// Beyond what the base unit can hold (i64).
    pub too_large: &'static str,
    /// Zero or negative.
    pub not_positive: &'static str,
}

/// Parses an optionally negative decimal times `scale` into a positive whole number of base units.
/// A sign is read only to say "must be more than zero" instead of "expected a number".
pub(crate) fn positive_amount(number: &str, scale: u64, msg: &Messages) -> Result<i64, ParseError> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let v = parse_scaled(digits, scale).map_err(|e| {
        ParseError::new(match e {
            Invalid::Malformed => msg.hint,
            Invalid::NotWhole => msg.not_whole,
            Invalid::TooLarge => msg.too_large,
        })
    })?;
    if negative || v == 0 {
        return Err(ParseError::new(msg.not_positive));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Malformed,
    NotWhole,
    TooLarge,
}

/// Parses an unsigned decimal (`12`, `0.5`, `.5`) and multiplies it by `scale`, exactly.
fn parse_scaled(s: &str, scale: u64) -> Result<i64, Invalid> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(Invalid::Malformed);
    }
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) || (s.contains('.') && frac.is_empty()) {
        return Err(Invalid::Malformed);
    }
    // Only digits are left, so a failed parse can only be an overflow.
    let w: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| Invalid::TooLarge)?
    };
    let frac = frac.trim_end_matches('0');
    // Keeps 10^len within u128; nobody types this much precision.
    if frac.len() > 30 {
        return Err(Invalid::Malformed);
    }
    let denom = 10u128.pow(frac.len() as u32);
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| Invalid::Malformed)?
    };
    let scaled_frac = f.checked_mul(scale as u128).ok_or(Invalid::Malformed)?;
    if scaled_frac % denom != 0 {
        return Err(Invalid::NotWhole);
    }
    let total = w
        .checked_mul(scale as u128)
        .and_then(|v| v.checked_add(scaled_frac / denom))
        .ok_or(Invalid::TooLarge)?;
    i64::try_from(total).map_err(|_| Invalid::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_decimals_are_exact() {
        assert_eq!(parse_scaled("12", 1000), Ok(12_000));
        assert_eq!(parse_scaled("0.5", 1000), Ok(500));
        assert_eq!(parse_scaled(".25", 1000), Ok(250));
        assert_eq!(parse_scaled("1.500", 1), Err(Invalid::NotWhole));
        assert_eq!(parse_scaled("1.5", 1 << 30), Ok(3 << 29));
        assert_eq!(parse_scaled("0.0005", 1000), Err(Invalid::NotWhole));
        assert_eq!(
            parse_scaled("9223372036854775808", 1),
            Err(Invalid::TooLarge)
        );
        assert_eq!(parse_scaled(&"9".repeat(50), 1), Err(Invalid::TooLarge));
        for bad in ["", ".", "1.", "+1", "-1", "1e3", "1 ", "a"] {
            assert_eq!(parse_scaled(bad, 1), Err(Invalid::Malformed), "{bad:?}");
        }
    }
}
