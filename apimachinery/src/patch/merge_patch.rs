//! JSON merge patch (RFC 7386), `application/merge-patch+json`.
//!
//! The patch is a partial document: objects merge key by key, `null` deletes a key, and
//! every other value (arrays included) replaces what was there. A patch that is not an
//! object replaces the whole target. This cannot fail; whether the result is still a
//! valid object of its kind is for the caller's decoding and validation to say.

use serde_json::{Map, Value};

/// `target` with `patch` merged in.
pub fn apply(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    apply_in_place(&mut out, patch);
    out
}

/// Merge `patch` into `target`.
pub fn apply_in_place(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            let slot = target.entry(key.as_str()).or_insert(Value::Null);
            apply_in_place(slot, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7386, appendix A.
    #[test]
    fn rfc_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(apply(&target, &patch), want, "{target} + {patch}");
        }
    }

    #[test]
    fn merges_nested_objects_and_keeps_order() {
        let target = json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}
        });
        let patch = json!({
            "metadata": {"labels": {"tier": null, "env": "prod"}},
            "spec": {"replicas": 3}
        });
        let out = apply(&target, &patch);
        assert_eq!(
            out,
            json!({
                "metadata": {"name": "web", "labels": {"app": "web", "env": "prod"}},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a"}]}}}
            })
        );
        let keys: Vec<&String> = out["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["app", "env"]);
        // The input is left alone.
        assert_eq!(target["spec"]["replicas"], 1);
    }
}
