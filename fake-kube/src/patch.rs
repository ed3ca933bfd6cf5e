//! Merging a patch into a stored object: JSON merge patch (RFC 7386) for `merge-patch+json`,
//! and the same with keyed list merging for `strategic-merge-patch+json` and server-side apply.
//!
//! Keyed lists (elements with a `name`, `containerPort`, `mountPath` or `devicePath`: containers,
//! env, ports, volumes, mounts) merge element by element, as Kubernetes' merge keys do, so
//! fields the server defaulted inside an element survive a patch or re-apply of that element.
//! The result keeps the patch's elements in the patch's order; elements the patch leaves out
//! are dropped (as a single manager's apply drops fields it no longer sets). Strategic-merge
//! directives (`$patch`, `$retainKeys`, `$setElementOrder`) are not understood.

use serde_json::Value;

/// How lists and nulls are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 7386: lists replaced, `null` deletes.
    Json,
    /// Strategic merge: keyed lists merged, `null` deletes.
    Strategic,
    /// Server-side apply: keyed lists merged, `null` ignored.
    Apply,
}

const MERGE_KEYS: &[&str] = &["name", "containerPort", "mountPath", "devicePath"];

/// The merge key every element of `list` has, if any.
fn merge_key(list: &[Value]) -> Option<&'static str> {
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| !list.is_empty() && list.iter().all(|e| e.get(*k).is_some_and(|v| !v.is_null())))
}

/// Applies `patch` onto `target`.
pub fn merge(target: &mut Value, patch: &Value, mode: Mode) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let Value::Object(t) = target else { return };
            for (k, v) in p {
                if v.is_null() {
                    if mode != Mode::Apply {
                        t.remove(k);
                    }
                    continue;
                }
                merge(t.entry(k.clone()).or_insert(Value::Null), v, mode);
            }
        }
        Value::Array(p) if mode != Mode::Json => match (merge_key(p), target.as_array()) {
            (Some(key), Some(old)) => {
                let merged = p
                    .iter()
                    .map(|e| {
                        let mut base = old
                            .iter()
                            .find(|o| o.get(key) == e.get(key))
                            .cloned()
                            .unwrap_or(Value::Null);
                        merge(&mut base, e, mode);
                        base
                    })
                    .collect();
                *target = Value::Array(merged);
            }
            _ => *target = patch.clone(),
        },
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"});
        merge(
            &mut t,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "k": null}),
            Mode::Json,
        );
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn keyed_lists_merge_by_name_and_keep_defaulted_fields() {
        let mut t = json!({"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always"},
            {"name": "b", "image": "y"}]});
        let p = json!({"containers": [{"name": "a", "image": "x2"}]});
        let mut json_merged = t.clone();
        merge(&mut json_merged, &p, Mode::Json);
        assert_eq!(json_merged, p, "a JSON merge patch replaces lists");
        merge(&mut t, &p, Mode::Apply);
        assert_eq!(
            t,
            json!({"containers": [{"name": "a", "image": "x2", "imagePullPolicy": "Always"}]})
        );
    }
}
