//! JSON merge patch (RFC 7386), used for `merge-patch+json`, for `strategic-merge-patch+json`
//! (without the strategic list merging: lists are replaced, see docs/kubernetes.md) and, without
//! null deletion, for server-side apply.

use serde_json::Value;

/// Applies `patch` onto `target`; `null` in the patch deletes a key when `nulls_delete`.
pub fn merge(target: &mut Value, patch: &Value, nulls_delete: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            if nulls_delete {
                t.remove(k);
            }
            continue;
        }
        merge(t.entry(k.clone()).or_insert(Value::Null), v, nulls_delete);
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
            true,
        );
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }
}
