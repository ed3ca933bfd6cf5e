//! Validation of user-supplied names and values. Every error names the field and the value.

use crate::error::{Error, Result};

/// Checks a DNS label: 1..=63 chars of `[a-z0-9-]`, starting with a letter, not ending with '-'.
pub fn dns_label(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} {v:?} is not a valid name: use 1-63 lowercase letters, digits or '-', starting with a letter"
        )))
    }
}

/// Checks an environment variable name.
pub fn env_name(v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "env name {v:?} is invalid: use [A-Za-z_][A-Za-z0-9_]*"
        )))
    }
}

/// Checks an image reference loosely: non-empty, no whitespace, bounded.
pub fn image(v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid("image is required"));
    }
    if v.len() > 255 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(format!(
            "image {v:?} is not a valid image reference"
        )));
    }
    Ok(())
}

/// Checks free text such as descriptions.
pub fn text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.chars().count() > max {
        return Err(Error::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        assert!(dns_label("site", "mit").is_ok());
        assert!(dns_label("site", "a-1").is_ok());
        for bad in ["", "Mit", "1abc", "a_b", "a-", &"a".repeat(64), "a b"] {
            let e = dns_label("site", bad).unwrap_err().to_string();
            assert!(e.contains("site"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn valid_labels_accepted(s in "[a-z][a-z0-9-]{0,61}[a-z0-9]") {
            prop_assert!(dns_label("x", &s).is_ok());
        }
        #[test]
        fn uppercase_rejected(s in "[a-z]{0,5}[A-Z][a-z]{0,5}") {
            prop_assert!(dns_label("x", &s).is_err());
        }
    }

    #[test]
    fn env_and_image() {
        assert!(env_name("FOO_1").is_ok());
        assert!(env_name("1FOO").is_err());
        assert!(image("slicebed/base:latest").is_ok());
        assert!(image("bad image").is_err());
        assert!(image("").is_err());
    }
}

/// Arbitrary names for sites, users, slices and nodes (all `dns_label`), env names, images and
/// free text: the checks never panic, and what they accept obeys the documented rules.
#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,70}",
            "[a-zA-Z0-9_. -]{0,70}",
            any::<String>(),
            // Lookalikes: non-ASCII letters, digits and dashes that print like valid ones.
            "[a-zа-яé٣−‐0-9-]{1,10}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn names_accepted_are_dns_labels(v in name()) {
            for field in ["site name", "user name", "slice name", "node name"] {
                let accepted = dns_label(field, &v).is_ok();
                let rule = !v.is_empty()
                    && v.len() <= 63
                    && v.as_bytes()[0].is_ascii_lowercase()
                    && !v.ends_with('-')
                    && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                prop_assert_eq!(accepted, rule, "{:?}", v);
                if let Err(e) = dns_label(field, &v) {
                    prop_assert!(e.to_string().contains(field));
                }
            }
        }

        #[test]
        fn env_names_accepted_are_identifiers(v in prop_oneof!["[A-Za-z_][A-Za-z0-9_]{0,140}", any::<String>()]) {
            if env_name(&v).is_ok() {
                prop_assert!(!v.is_empty() && v.len() <= 128);
                prop_assert!(!v.as_bytes()[0].is_ascii_digit());
                prop_assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            }
        }

        #[test]
        fn images_accepted_are_bounded_and_printable(v in prop_oneof!["[a-z0-9/:.@-]{0,300}", any::<String>()]) {
            if image(&v).is_ok() {
                prop_assert!(!v.is_empty() && v.len() <= 255);
                prop_assert!(!v.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
        }

        #[test]
        fn text_accepted_is_bounded_and_has_no_controls(v in any::<String>(), max in 0usize..64) {
            if text("description", &v, max).is_ok() {
                prop_assert!(v.chars().count() <= max);
                prop_assert!(v.chars().all(|c| !c.is_control() || c == '\n'));
            }
        }
    }
}
