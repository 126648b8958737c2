//! Accessors for `metadata` and other common paths on untyped objects.
//!
//! The apiserver keeps objects as `serde_json::Value` so that nothing a client sent is
//! lost; these helpers keep the path-walking in one place.

use serde_json::{Map, Value};

/// `obj.metadata.<field>` as a string, or "".
pub fn str_field<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    str_field(obj, "name")
}
pub fn namespace(obj: &Value) -> &str {
    str_field(obj, "namespace")
}
pub fn uid(obj: &Value) -> &str {
    str_field(obj, "uid")
}
pub fn resource_version(obj: &Value) -> &str {
    str_field(obj, "resourceVersion")
}

/// `metadata`, created as an empty object when missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let o = obj.as_object_mut().expect("object");
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("object")
}

/// Labels (or annotations) as string pairs; non-string values are skipped.
pub fn string_map<'a>(obj: &'a Value, field: &str) -> Vec<(&'a str, &'a str)> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn labels(obj: &Value) -> Vec<(&str, &str)> {
    string_map(obj, "labels")
}

/// Walk a dotted path (`spec.template.spec`); array indices are not supported here.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, k| v.get(k))
}

/// Walk a dotted path, creating empty objects on the way.
pub fn get_path_mut<'a>(obj: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.').fold(obj, |v, k| {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut()
            .expect("object")
            .entry(k)
            .or_insert(Value::Null)
    })
}

/// Set `obj.<path>` to `value` when it is missing or null (Kubernetes defaulting).
pub fn set_default(obj: &mut Value, path: &str, value: Value) {
    let slot = get_path_mut(obj, path);
    if slot.is_null() {
        *slot = value;
    }
}

/// The strings of a JSON array at `path` (`spec.audiences`); empty when there is none.
pub fn path_strings(obj: &Value, path: &str) -> Vec<String> {
    strings(get_path(obj, path))
}

/// The strings of a JSON array; empty when it is absent or not an array.
pub fn strings(array: Option<&Value>) -> Vec<String> {
    array
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `obj.<path>` as a string, or "".
pub fn path_str<'a>(obj: &'a Value, path: &str) -> &'a str {
    get_path(obj, path).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_default_fills_only_missing() {
        let mut v = json!({"spec": {"a": 1}});
        set_default(&mut v, "spec.a", json!(2));
        set_default(&mut v, "spec.b.c", json!(3));
        assert_eq!(v, json!({"spec": {"a": 1, "b": {"c": 3}}}));
    }
}
