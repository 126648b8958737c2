//! What the store does to `metadata` for every kind: names, uid, timestamps,
//! generation, and validation of labels, annotations, owner references and finalizers.

use keelson_apimachinery::{meta, validation, ApiError, Cause};
use keelson_resources::ResourceType;
use rand::Rng;
use serde_json::{json, Map, Value};

/// Kubernetes' limit on the total size of annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Five random characters from Kubernetes' generateName alphabet (no vowels, no
/// characters that look alike).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Check `apiVersion`/`kind` against the URL, filling them in when absent.
pub fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let want_av = rt.api_version();
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), json!(want_av));
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
    }
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), json!(rt.kind));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )))
        }
    }
    Ok(())
}

/// Check the object's namespace against the URL's, filling it in when absent.
pub fn check_namespace(
    rt: &ResourceType,
    obj: &mut Value,
    namespace: &str,
) -> Result<(), ApiError> {
    let m = meta::metadata_mut(obj);
    if !rt.namespaced {
        m.remove("namespace");
        return Ok(());
    }
    match m.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("namespace".into(), json!(namespace));
            Ok(())
        }
        Some(ns) if ns == namespace => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// Set the server-owned metadata of a new object.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let m = meta::metadata_mut(obj);
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name_empty = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty();
    if name_empty {
        if let Some(prefix) = m
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let name = format!("{prefix}{}", random_suffix());
            m.insert("name".into(), json!(name));
        }
    }
    m.remove("resourceVersion");
    m.remove("selfLink");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if rt.strategy.tracks_generation() {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    Ok(())
}

/// Carry the server-owned metadata of `old` into `new` on update.
pub fn prepare_update(new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
    let m = meta::metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    m.remove("selfLink");
}

/// Bump `metadata.generation` when anything outside metadata and status changed. Runs
/// after defaulting, so a client that leaves defaults out changes nothing.
pub fn bump_generation(rt: &ResourceType, new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
    if rt.strategy.tracks_generation() && spec_changed(new, old) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// Whether anything outside metadata and status differs.
fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
        m
    };
    strip(new) != strip(old)
}

/// Validate the metadata every kind shares.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let m = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta::name(obj);
    if name.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else {
        for msg in rt.strategy.validate_name(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), msg));
        }
    }
    if let Some(gn) = m
        .get("generateName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        // The prefix may end in '-'; validate it with a character appended.
        for msg in rt.strategy.validate_name(&format!("{gn}a")) {
            causes.push(Cause::invalid("metadata.generateName", &json!(gn), msg));
        }
    }
    if rt.namespaced {
        let ns = meta::namespace(obj);
        if ns.is_empty() {
            causes.push(Cause::required("metadata.namespace"));
        }
    }
    if let Some(labels) = m.get("labels").filter(|v| !v.is_null()) {
        match labels.as_object() {
            None => causes.push(Cause::invalid(
                "metadata.labels",
                labels,
                "must be a map of strings",
            )),
            Some(map) => {
                for (k, v) in map {
                    for msg in validation::qualified_name(k) {
                        causes.push(Cause::invalid("metadata.labels", &json!(k), msg));
                    }
                    match v.as_str() {
                        Some(s) => {
                            for msg in validation::label_value(s) {
                                causes.push(Cause::invalid("metadata.labels", &json!(s), msg));
                            }
                        }
                        None => causes.push(Cause::invalid(
                            format!("metadata.labels.{k}"),
                            v,
                            "must be a string",
                        )),
                    }
                }
            }
        }
    }
    if let Some(ann) = m.get("annotations").filter(|v| !v.is_null()) {
        match ann.as_object() {
            None => causes.push(Cause::invalid(
                "metadata.annotations",
                ann,
                "must be a map of strings",
            )),
            Some(map) => {
                let mut total = 0;
                for (k, v) in map {
                    for msg in validation::qualified_name(&k.to_lowercase()) {
                        causes.push(Cause::invalid("metadata.annotations", &json!(k), msg));
                    }
                    total += k.len() + v.as_str().map_or(0, str::len);
                }
                if total > ANNOTATIONS_MAX_BYTES {
                    causes.push(Cause::new(
                        "FieldValueTooLong",
                        "metadata.annotations",
                        format!("Too long: may not be more than {ANNOTATIONS_MAX_BYTES} bytes"),
                    ));
                }
            }
        }
    }
    if let Some(refs) = m.get("ownerReferences").and_then(Value::as_array) {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                    causes.push(Cause::required(format!(
                        "metadata.ownerReferences[{i}].{f}"
                    )));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            causes.push(Cause::invalid(
                "metadata.ownerReferences",
                &Value::Array(refs.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(fins) = m.get("finalizers").and_then(Value::as_array) {
        for (i, f) in fins.iter().enumerate() {
            let s = f.as_str().unwrap_or("");
            for msg in validation::qualified_name(s) {
                causes.push(Cause::invalid(format!("metadata.finalizers[{i}]"), f, msg));
            }
        }
    }
    causes
}

/// Checks on update that apply to every kind.
pub fn validate_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if meta::name(new) != meta::name(old) {
        causes.push(Cause::immutable("metadata.name", &json!(meta::name(new))));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_suffix_has_five_safe_chars() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn spec_change_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(!spec_changed(&a, &b));
        let c = json!({"spec": {"x": 2}});
        assert!(spec_changed(&a, &c));
    }
}
