//! Label selectors (`a=b,c!=d,e in (x,y),!f`) and the field selectors Slicebed uses
//! (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`, `spec.unschedulable`).
//!
//! A selector the fake cannot evaluate is a 400, never "matches everything".

use serde_json::Value;

use crate::status::{ApiError, Result};

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parsed label and field selectors of one request.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

const FIELDS: &[&str] = &[
    "involvedObject.name",
    "involvedObject.kind",
    "involvedObject.uid",
    "involvedObject.namespace",
    "reason",
    "type",
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "spec.unschedulable",
];

impl Selector {
    pub fn parse(label: Option<&str>, field: Option<&str>) -> Result<Self> {
        let labels = match label {
            Some(s) => parse(s)?,
            None => vec![],
        };
        let fields = match field {
            Some(s) => parse(s)?,
            None => vec![],
        };
        for f in &fields {
            let key = match f {
                Req::Eq(k, _) | Req::Ne(k, _) => k,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid field selector: {}",
                        field.unwrap_or("")
                    )))
                }
            };
            if !FIELDS.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
        }
        Ok(Selector { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
        let field = |k: &str| {
            let mut v = obj;
            for part in k.split('.') {
                v = &v[part];
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null if k == "spec.unschedulable" => Some("false".into()),
                Value::Null => Some(String::new()),
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|r| eval(r, &label)) && self.fields.iter().all(|r| eval(r, &field))
    }
}

fn eval(req: &Req, get: &dyn Fn(&str) -> Option<String>) -> bool {
    match req {
        Req::Eq(k, v) => get(k).as_deref() == Some(v),
        Req::Ne(k, v) => get(k).as_deref() != Some(v),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    }
}

/// Splits on commas outside parentheses, then reads each requirement.
fn parse(s: &str) -> Result<Vec<Req>> {
    let bad = || {
        ApiError::bad_request(format!(
            "unable to parse requirement: invalid selector \"{s}\""
        ))
    };
    let mut parts = vec![];
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    let mut reqs = vec![];
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad)?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = if let Some((k, v)) = p.split_once("!=") {
            Req::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            Req::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Req::NotIn(k.trim().into(), set(rest)?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Req::In(k.trim().into(), set(rest)?)
        } else if let Some(k) = p.strip_prefix('!') {
            Req::NotExists(k.trim().into())
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Req::Exists(p.into())
        } else {
            return Err(bad());
        };
        reqs.push(req);
    }
    Ok(reqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors_match_like_the_api_server() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "a", "tier": "x"}}, "spec": {"nodeName": "n1"}});
        let m = |l: Option<&str>, f: Option<&str>| Selector::parse(l, f).unwrap().matches(&pod);
        assert!(m(Some("app=a,tier in (x, y)"), Some("spec.nodeName=n1")));
        assert!(!m(Some("app=a,tier notin (x)"), None));
        assert!(m(Some("!missing,app"), Some("metadata.name!=q")));
        assert!(!m(None, Some("spec.nodeName=n2")));
        assert_eq!(
            Selector::parse(None, Some("spec.bogus=1"))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(Selector::parse(Some("a in x"), None).unwrap_err().code, 400);
    }
}
