//! The DefaultStorageClass admission plugin: a new PersistentVolumeClaim that names no
//! class (neither `spec.storageClassName`, not even `""`, nor the beta annotation) gets
//! the cluster's default StorageClass, the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`. With several defaults the
//! newest wins (then the first by name), as in Kubernetes since 1.26; with none the
//! claim is left alone.
//!
//! Claims are created rarely, so the classes are read from etcd on each such create
//! rather than followed in a cache.

use super::forbidden;
use crate::registry::decode_kv;
use crate::storage::Storage;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::kinds::storageclasses;
use keelson_resources::ResourceType;
use serde_json::{json, Value};

/// The annotation that named a claim's class before `spec.storageClassName`.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// `PersistentVolumeClaimHasClass`: whether the claim asked for a class (`""` too).
fn has_class(pvc: &Value) -> bool {
    let annotated = pvc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .is_some();
    annotated
        || pvc
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
}

/// `GetDefaultClass`: the newest class marked default, the first by name among equals.
fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| storageclasses::is_default(c))
        .min_by(|a, b| {
            let created = |c: &Value| {
                let t = meta::str_field(c, "creationTimestamp");
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
                    .unwrap_or(0)
            };
            created(b)
                .cmp(&created(a))
                .then_with(|| meta::name(a).cmp(meta::name(b)))
        })
}

/// Give `pvc` the default class when it names none.
pub async fn admit(storage: &Storage, rt: &ResourceType, pvc: &mut Value) -> Result<(), ApiError> {
    if has_class(pvc) {
        return Ok(());
    }
    let prefix = format!("{}/", storageclasses::RESOURCE.key_prefix());
    let page = storage
        .list(&prefix, "", 0, 0)
        .await
        .map_err(|e| forbidden(rt, meta::name(pvc), &e.to_string()))?;
    let classes: Vec<Value> = page
        .kvs
        .iter()
        .filter_map(|kv| decode_kv(kv).ok())
        .collect();
    if let Some(class) = default_class(&classes) {
        let name = meta::name(class).to_string();
        if let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), json!(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}, "provisioner": "x.io/y"});
        if default {
            c["metadata"]["annotations"] =
                json!({storageclasses::DEFAULT_CLASS_ANNOTATION: "true"});
        }
        c
    }

    #[test]
    fn the_newest_default_wins() {
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("plain", "2026-03-01T00:00:00Z", false),
            class("b-new", "2026-02-01T00:00:00Z", true),
            class("a-new", "2026-02-01T00:00:00Z", true),
        ];
        assert_eq!(meta::name(default_class(&classes).unwrap()), "a-new");
        assert!(default_class(&classes[1..2]).is_none());
    }

    #[test]
    fn an_explicit_class_even_empty_is_kept() {
        assert!(!has_class(&json!({"spec": {}})));
        assert!(!has_class(&json!({"spec": {"storageClassName": null}})));
        assert!(has_class(&json!({"spec": {"storageClassName": ""}})));
        assert!(has_class(
            &json!({"metadata": {"annotations": {BETA_CLASS_ANNOTATION: "fast"}}, "spec": {}})
        ));
    }
}
