//! Type checking and unknown-field detection (`fieldValidation`).
//!
//! The apiserver keeps objects as JSON, but a body must still decode as its Kubernetes
//! type: a string where an integer belongs is a 400, as on Kubernetes. Decoding the body
//! into the k8s-openapi type and encoding it again also shows which fields the type does
//! not know: those are unknown fields. `Strict` rejects them, `Warn` drops them with a
//! warning, `Ignore` drops them silently — Kubernetes' behaviour. Values of known fields
//! are kept exactly as sent (the round-trip is only used to find what is unknown).

use super::FieldValidation;
use keelson_apimachinery::ApiError;
use keelson_resources::{ResourceType, Typed};
use serde_json::Value;

/// Remove from `obj` every field `known` lacks; returns their paths. Null values are
/// dropped without counting as unknown (Kubernetes drops them too).
fn prune(obj: &mut Value, known: &Value, path: &str, unknown: &mut Vec<String>) {
    match (obj, known) {
        (Value::Object(o), Value::Object(k)) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for key in keys {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(&key) {
                    Some(kv) => prune(o.get_mut(&key).expect("key"), kv, &child_path, unknown),
                    None => {
                        if !o[&key].is_null() {
                            unknown.push(child_path);
                        }
                        o.remove(&key);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(k)) if a.len() == k.len() => {
            for (i, (item, kitem)) in a.iter_mut().zip(k).enumerate() {
                prune(item, kitem, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Check `obj` against its kind's type (none for kinds without one, such as custom
/// resources); returns warnings (for `Warn`).
pub fn check_unknown(
    rt: &ResourceType,
    obj: &mut Value,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    // Kinds with a schema (custom resources) prune by it instead of a typed model.
    if let Some(unknown) = rt.strategy.prune(obj) {
        return unknown_fields(unknown, mode);
    }
    match &rt.typed {
        Some(typed) => check_kind(typed, obj, mode),
        None => Ok(Vec::new()),
    }
}

/// Check `obj` against `typed` (a kind's, or a subresource body's such as Scale).
pub fn check_kind(
    typed: &Typed,
    obj: &mut Value,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let (kind, version) = (typed.kind, typed.version);
    let known = (typed.round_trip)(obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut unknown = Vec::new();
    prune(obj, &known, "", &mut unknown);
    unknown_fields(unknown, mode)
}

/// What `fieldValidation` makes of the unknown fields found (already dropped).
fn unknown_fields(unknown: Vec<String>, mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let described: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            described.join(", ")
        ))),
        FieldValidation::Warn => Ok(described),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// Paths of the keys a JSON body repeats within one object (`spec.replicas`,
/// `spec.template.spec.containers[0].name`), in the order they appear. A parsed
/// `serde_json::Value` keeps only the last value of a repeated key; Kubernetes reports
/// the repetition under `fieldValidation`. Bodies that are not JSON have none.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Vec<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.found.borrow_mut().push(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    if (Walk {
        path: String::new(),
        found: &found,
    })
    .deserialize(&mut de)
    .is_err()
    {
        return Vec::new();
    }
    let mut out = found.into_inner();
    out.dedup();
    out
}

/// `fieldValidation` for the duplicate keys of a create or update body: Strict fails
/// with Kubernetes' message (unknown fields first, then duplicates), Warn returns
/// warnings, Ignore nothing.
pub fn check_duplicates(
    rt: &ResourceType,
    obj: &Value,
    body: &[u8],
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let dups = duplicate_fields(body);
    if dups.is_empty() {
        return Ok(Vec::new());
    }
    let described: Vec<String> = dups
        .iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .collect();
    if mode == FieldValidation::Warn {
        return Ok(described);
    }
    match check_unknown(rt, &mut obj.clone(), FieldValidation::Strict) {
        Err(e) if e.message.starts_with("strict decoding error: ") => Err(ApiError::bad_request(
            format!("{}, {}", e.message, described.join(", ")),
        )),
        Err(e) => Err(e),
        Ok(_) => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            described.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> &'static ResourceType {
        keelson_resources::find("", "configmaps").unwrap()
    }

    #[test]
    fn strict_rejects_unknown_fields_and_warn_drops_them() {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"k": "v"}, "extra": true});
        let err = check_unknown(cm(), &mut body.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("unknown field \"metadata.bogus\""),
            "{}",
            err.message
        );
        assert!(err.message.contains("unknown field \"extra\""));
        let mut b = body.clone();
        let warnings = check_unknown(cm(), &mut b, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(b.get("extra").is_none());
        assert_eq!(b["data"]["k"], "v");
    }

    #[test]
    fn duplicate_keys_are_found_with_their_paths() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"replicas": 2, "unknownField": 1, "replicas": 3,
            "containers": [{"name": "x", "name": "y"}]}, "data": {"k": "v"}}"#;
        assert_eq!(
            duplicate_fields(body),
            ["metadata.name", "spec.replicas", "spec.containers[0].name"]
        );
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
        assert!(duplicate_fields(b"not json").is_empty());
        let dep = keelson_resources::find("apps", "deployments").unwrap();
        let obj: Value = serde_json::from_slice(br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"unknownField": 1, "replicas": 3}}"#).unwrap();
        let body = br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"unknownField": 1, "replicas": 2, "replicas": 3}}"#;
        let err = check_duplicates(dep, &obj, body, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            err.message,
            r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#
        );
        assert_eq!(
            check_duplicates(dep, &obj, body, FieldValidation::Warn).unwrap(),
            [r#"duplicate field "spec.replicas""#]
        );
        assert!(check_duplicates(dep, &obj, body, FieldValidation::Ignore)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let mut body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 5}});
        assert_eq!(
            check_unknown(cm(), &mut body, FieldValidation::Warn)
                .unwrap_err()
                .code,
            400
        );
    }
}
