//! JSON patch (RFC 6902), `application/json-patch+json`.
//!
//! A patch is an array of operations (`add`, `remove`, `replace`, `move`, `copy`,
//! `test`) addressed by JSON pointers (RFC 6901: `/a/b/0`, `~1` for `/`, `~0` for `~`,
//! `-` for the end of an array). Operations apply in order and all or nothing.
//!
//! Status codes, as the Kubernetes apiserver chooses them:
//!
//! - the body is not a JSON array of objects: **400 BadRequest** (Kubernetes: "failing
//!   to decode the patch");
//! - more than [`MAX_OPERATIONS`] operations: **413 RequestEntityTooLarge**, worded as
//!   Kubernetes words it;
//! - an operation that cannot be applied (unknown `op`, missing or malformed `path`,
//!   `from` or `value`, a path that does not exist, a failed `test`): **422 Invalid**
//!   with Kubernetes' message `the server rejected our request due to an error in our
//!   request`. Kubernetes drops the detail; Keelson keeps it as the one cause (reason
//!   `FieldValueInvalid`, field `patch`), e.g. `testing value /metadata/labels/app
//!   failed: test failed`.
//!
//! Deviations from the Go library Kubernetes uses (evanphx/json-patch), knowingly:
//! negative array indices are rejected (RFC 6901 has none); like it, a `test` of `null`
//! against a missing location succeeds, and numbers compare by value (`1` == `1.0`).

// `ApiError` is this crate's error type by design, large as it is.
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::{ApiError, Cause};

/// The most operations one patch may hold, as in Kubernetes.
pub const MAX_OPERATIONS: usize = 10_000;

/// Kubernetes' message for a patch that does not apply.
pub const APPLY_ERROR_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

/// A decoded patch: a list of operation objects, checked one by one as they apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    ops: Vec<serde_json::Map<String, Value>>,
}

/// Decode a request body. 400 when it is not JSON or not an array of objects; 413
/// beyond [`MAX_OPERATIONS`].
pub fn decode(body: &[u8]) -> Result<Patch, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    Patch::from_value(&value)
}

/// Decode `patch` and apply it to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    Patch::from_value(patch)?.apply(doc)
}

impl Patch {
    /// A patch from an already-parsed body; same errors as [`decode`].
    pub fn from_value(value: &Value) -> Result<Patch, ApiError> {
        let Value::Array(items) = value else {
            return Err(ApiError::bad_request(format!(
                "error decoding patch: a JSON patch must be an array of operations, got {}",
                kind_of(value)
            )));
        };
        if items.len() > MAX_OPERATIONS {
            return Err(ApiError::too_large(format!(
                "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
                items.len()
            )));
        }
        let mut ops = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Object(op) => ops.push(op.clone()),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "error decoding patch: operation {i} must be an object, got {}",
                        kind_of(other)
                    )))
                }
            }
        }
        Ok(Patch { ops })
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Apply every operation to a copy of `doc`. 422 on the first that fails.
    pub fn apply(&self, doc: &Value) -> Result<Value, ApiError> {
        let mut out = doc.clone();
        for op in &self.ops {
            apply_op(&mut out, op).map_err(apply_error)?;
        }
        Ok(out)
    }
}

fn apply_error(detail: String) -> ApiError {
    let mut e = ApiError::new(422, "Invalid", APPLY_ERROR_MESSAGE);
    e.causes = vec![Cause::new("FieldValueInvalid", "patch", detail)];
    e
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn str_member<'a>(
    op: &'a serde_json::Map<String, Value>,
    name: &str,
    kind: &str,
) -> Result<&'a str, String> {
    match op.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{kind} operation: {name} must be a string")),
        None => Err(format!("{kind} operation is missing the {name} field")),
    }
}

fn apply_op(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let kind = match op.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("Unexpected kind: {other}")),
        None => return Err("operation is missing the op field".to_string()),
    };
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| format!("{kind} operation is missing the value field"))
    };
    match kind {
        "add" => {
            let path = parse_pointer(str_member(op, "path", kind)?)?;
            add(doc, &path, value()?).map_err(|e| format!("add operation does not apply: {e}"))
        }
        "remove" => {
            let raw = str_member(op, "path", kind)?;
            let path = parse_pointer(raw)?;
            remove(doc, &path)
                .map(drop)
                .map_err(|e| format!("remove operation does not apply: {e}"))
        }
        "replace" => {
            let raw = str_member(op, "path", kind)?;
            let path = parse_pointer(raw)?;
            let new = value()?;
            match get_mut(doc, &path) {
                Some(slot) => {
                    *slot = new;
                    Ok(())
                }
                None => Err(format!(
                    "replace operation does not apply: doc is missing path: {raw:?}"
                )),
            }
        }
        "move" => {
            let from_raw = str_member(op, "from", kind)?;
            let from = parse_pointer(from_raw)?;
            let path = parse_pointer(str_member(op, "path", kind)?)?;
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(format!(
                    "move operation does not apply: {from_raw:?} cannot be moved into one of its children"
                ));
            }
            let moved =
                remove(doc, &from).map_err(|e| format!("move operation does not apply: {e}"))?;
            add(doc, &path, moved).map_err(|e| format!("move operation does not apply: {e}"))
        }
        "copy" => {
            let from_raw = str_member(op, "from", kind)?;
            let from = parse_pointer(from_raw)?;
            let path = parse_pointer(str_member(op, "path", kind)?)?;
            let copied = get(doc, &from).cloned().ok_or_else(|| {
                format!("copy operation does not apply: doc is missing from path: {from_raw:?}")
            })?;
            add(doc, &path, copied).map_err(|e| format!("copy operation does not apply: {e}"))
        }
        "test" => {
            let raw = str_member(op, "path", kind)?;
            let path = parse_pointer(raw)?;
            let expected = op.get("value").unwrap_or(&Value::Null);
            let ok = match get(doc, &path) {
                Some(actual) => json_eq(actual, expected),
                None => expected.is_null(),
            };
            if ok {
                Ok(())
            } else {
                Err(format!("testing value {raw} failed: test failed"))
            }
        }
        other => Err(format!("Unexpected kind: {other}")),
    }
}

/// Split a JSON pointer into unescaped reference tokens.
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "JSON pointer {pointer:?} must be empty or start with '/'"
        ));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(format!(
                            "JSON pointer {pointer:?} has an invalid escape: '~' must be followed by '0' or '1'"
                        ))
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal digits only (no sign).
fn index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid array index: {token:?}"));
    }
    let i: usize = token
        .parse()
        .map_err(|_| format!("invalid array index: {token:?}"))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("Unable to access invalid index: {i}"));
    }
    Ok(i)
}

fn show(path: &[String]) -> String {
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => index(token, a.len(), false).ok().map(|i| &a[i]),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => match index(token, a.len(), false) {
            Ok(i) => Some(&mut a[i]),
            Err(_) => None,
        },
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_path)
        .ok_or_else(|| format!("doc is missing path: {:?}", show(path)))?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "doc is missing path: {:?}: the parent is not an object or array",
            show(path)
        )),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, String> {
    let Some((last, parent_path)) = path.split_last() else {
        return Err("the whole document cannot be removed".to_string());
    };
    let missing = || format!("doc is missing path: {:?}", show(path));
    match get_mut(doc, parent_path).ok_or_else(missing)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// JSON equality with numbers compared by value, as Go's decoded `float64`s are.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, ApiError> {
        apply(&doc, &patch)
    }

    fn detail(e: &ApiError) -> &str {
        &e.causes[0].message
    }

    #[test]
    fn add_replace_remove() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        let out = run(
            doc,
            json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "one"},
                {"op": "add", "path": "/spec/list/1", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "remove", "path": "/spec/list/0"},
                {"op": "add", "path": "/spec/new", "value": {"x": null}},
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "one", "b": "2"}},
                   "spec": {"list": [9, 2, 3], "new": {"x": null}}})
        );
    }

    #[test]
    fn add_replaces_existing_member_in_place() {
        let out = run(
            json!({"a": 1, "b": 2, "c": 3}),
            json!([{"op": "add", "path": "/b", "value": 20}]),
        )
        .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(out["b"], 20);
    }

    #[test]
    fn remove_keeps_member_order() {
        let out = run(
            json!({"a": 1, "b": 2, "c": 3}),
            json!([{"op": "remove", "path": "/a"}]),
        )
        .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn pointer_escapes() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_pointer("/").unwrap(), vec![""]);
        assert_eq!(
            parse_pointer("/a~1b/m~0n/~01").unwrap(),
            vec!["a/b", "m~n", "~1"]
        );
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a~2").is_err());
        let doc = json!({"metadata": {"annotations": {"example.com/x": "1", "t~": "2"}}});
        let out = run(
            doc,
            json!([
                {"op": "replace", "path": "/metadata/annotations/example.com~1x", "value": "one"},
                {"op": "remove", "path": "/metadata/annotations/t~0"},
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"example.com/x": "one"}}})
        );
    }

    #[test]
    fn move_copy_test() {
        let doc = json!({"a": {"b": [1, {"c": 2}]}, "d": "x"});
        let out = run(
            doc,
            json!([
                {"op": "test", "path": "/a/b/1/c", "value": 2.0},
                {"op": "copy", "from": "/a/b/1", "path": "/e"},
                {"op": "move", "from": "/d", "path": "/a/b/0"},
                {"op": "test", "path": "/missing", "value": null},
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": ["x", 1, {"c": 2}]}, "e": {"c": 2}}));
    }

    #[test]
    fn whole_document() {
        let out = run(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "", "value": [1]}]),
        );
        assert_eq!(out.unwrap(), json!([1]));
        let e = run(json!({"a": 1}), json!([{"op": "remove", "path": ""}])).unwrap_err();
        assert_eq!(e.code, 422);
    }

    #[test]
    fn failures_are_422_and_atomic() {
        let doc = json!({"metadata": {"labels": {"app": "web"}}, "list": [1]});
        let e = run(
            doc.clone(),
            json!([
                {"op": "add", "path": "/metadata/labels/x", "value": "y"},
                {"op": "test", "path": "/metadata/labels/app", "value": "db"},
            ]),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.reason, "Invalid");
        assert_eq!(e.message, APPLY_ERROR_MESSAGE);
        assert_eq!(
            detail(&e),
            "testing value /metadata/labels/app failed: test failed"
        );

        let cases = [
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            json!([{"op": "add", "path": "/a/b", "value": 1}]),
            json!([{"op": "add", "path": "/list/5", "value": 1}]),
            json!([{"op": "add", "path": "/list/01x", "value": 1}]),
            json!([{"op": "add", "path": "/list/-1", "value": 1}]),
            json!([{"op": "remove", "path": "/list/1"}]),
            json!([{"op": "remove", "path": "/list/-"}]),
            json!([{"op": "add", "path": "/x"}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/x"}]),
            json!([{"path": "/x"}]),
            json!([{"op": "move", "from": "/metadata", "path": "/metadata/labels/m"}]),
            json!([{"op": "copy", "from": "/nope", "path": "/x"}]),
            json!([{"op": "test", "path": "/list", "value": [2]}]),
            json!([{"op": "add", "path": "/metadata/labels/app/deeper", "value": 1}]),
        ];
        for patch in cases {
            let e = run(doc.clone(), patch.clone()).unwrap_err();
            assert_eq!(e.code, 422, "{patch}");
            assert!(!detail(&e).is_empty());
        }
        assert_eq!(
            detail(&run(doc.clone(), json!([{"op": "frobnicate", "path": "/x"}])).unwrap_err()),
            "Unexpected kind: frobnicate"
        );
    }

    #[test]
    fn decoding_errors_are_400_and_413() {
        assert_eq!(decode(b"{\"op\":\"add\"}").unwrap_err().code, 400);
        assert_eq!(decode(b"[1]").unwrap_err().code, 400);
        assert_eq!(decode(b"not json").unwrap_err().code, 400);
        assert_eq!(decode(b"[]").unwrap().len(), 0);
        let many = Value::Array(vec![
            json!({"op": "test", "path": "", "value": null});
            10_001
        ]);
        let e = Patch::from_value(&many).unwrap_err();
        assert_eq!(e.code, 413);
        assert_eq!(
            e.message,
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let p = decode(br#"[{"op":"add","path":"/a","value":1}]"#).unwrap();
        assert_eq!(p.apply(&json!({})).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn numeric_equality() {
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }
}
