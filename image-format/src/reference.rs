//! Image references as researchers type them: `name`, `name:tag`, `name@sha256:…` or
//! `name:tag@sha256:…`. Names are registry repository names without a host: lowercase path
//! components (`[a-z0-9]+` joined by single `.`, `_` or `-`) separated by `/`. Tags are
//! `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. Validation here is the one the service enforces.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Longest repository name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;
const MAX_COMPONENTS: usize = 8;

/// A validated image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Repository name, e.g. `alice/iperf`.
    pub name: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest, if one was given (it wins over the tag).
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Reference(format!("image reference {:?}: {why}", cut(s)));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (rest, None),
        };
        check_name(name).map_err(|w| bad(&w))?;
        if let Some(t) = tag {
            check_tag(t).map_err(|w| bad(&w))?;
        }
        Ok(Self {
            name: name.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parses `s`, which must carry no digest; the tag defaults to `latest`.
    pub fn parse_tagged(s: &str) -> Result<Self> {
        let mut r = Self::parse(s)?;
        if r.digest.is_some() {
            return Err(Error::Reference(format!(
                "image reference {:?}: a tag is expected here, not a digest",
                cut(s)
            )));
        }
        r.tag.get_or_insert_with(|| "latest".to_string());
        Ok(r)
    }

    /// The tag, or `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `name@digest`, the pinned form slices record and nodes run.
    pub fn pinned(name: &str, digest: &Digest) -> String {
        format!("{name}@{digest}")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn cut(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Checks a repository name; the error says what rule it breaks.
pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > MAX_COMPONENTS {
        return Err(format!(
            "the name has more than {MAX_COMPONENTS} path components"
        ));
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.split(['.', '_', '-']).all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !ok {
            return Err(format!(
                "name component {p:?} must be lowercase letters and digits, joined by single '.', '_' or '-'"
            ));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let first_ok = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ));
    }
    if !tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("tag {tag:?} may hold only [A-Za-z0-9_.-]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted_forms() {
        let r = Reference::parse("alice/iperf:v1.2").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("alice/iperf", Some("v1.2"))
        );
        let r = Reference::parse_tagged("slicebed/base").unwrap();
        assert_eq!(r.tag_or_latest(), "latest");
        assert_eq!(r.to_string(), "slicebed/base:latest");
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("a/b@{d}")).unwrap();
        assert_eq!(r.digest.as_ref(), Some(&d));
        assert!(r.tag.is_none());
        let r = Reference::parse(&format!("a/b:t@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("a/b:t@{d}"));
        assert!(Reference::parse_tagged(&format!("a@{d}")).is_err());
        assert!(Reference::parse("my-tool.v2/x_y:latest").is_ok());
    }

    #[test]
    fn refused_forms_name_the_problem() {
        for bad in [
            "",
            "Alice/x",
            "a//b",
            "/a",
            "a/",
            "a:",
            "a:-x",
            "a:t t",
            "host:5000/a:b",
            "a--b",
            "a/../b",
            "a@sha256:zz",
            "a b",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.to_string().contains("image reference"), "{bad}: {e}");
        }
        assert!(Reference::parse(&"a".repeat(129)).is_err());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    proptest! {
        #[test]
        fn parse_round_trips(s in "[a-z0-9./_:@-]{0,40}") {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(r.to_string(), s.clone());
                prop_assert!(!r.name.contains(".."));
                prop_assert!(!r.name.starts_with('/'));
            }
        }
    }
}
