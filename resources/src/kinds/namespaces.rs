//! core/v1 Namespace.
//!
//! Created `Active` with the `kubernetes` finalizer; carries the
//! `kubernetes.io/metadata.name` label Kubernetes keeps equal to the name. Deletion is
//! held while `spec.finalizers` is non-empty (the namespace controller empties it
//! through `/finalize`), and the phase turns `Terminating` meanwhile.

use crate::podspec::{ensure_object, items};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[Subresource::Status, Subresource::Finalize],
    strategy: &Namespaces,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Namespace>()),
    merge: Some(Root::Namespace),
};

struct Namespaces;

/// The label Kubernetes sets to the namespace's name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The finalizer the namespace controller removes once the namespace is empty.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// What a main-resource update may not change and Kubernetes silently keeps: the
/// finalizers (changed only through `/finalize`). The store calls this before
/// validating an update of `namespaces` (the status is kept by the store already).
pub fn prepare_for_update(new: &mut Value, old: &Value) {
    let finalizers = old.get("spec").and_then(|s| s.get("finalizers")).cloned();
    let spec = ensure_object(ensure_object(new).entry("spec").or_insert(Value::Null));
    match finalizers {
        Some(f) => {
            spec.insert("finalizers".into(), f);
        }
        None => {
            spec.remove("finalizers");
        }
    }
}

/// `validateFinalizerName`: a qualified name, and either `kubernetes` or prefixed.
fn validate_finalizer(name: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::qualified_name(name) {
        out.push(Cause::invalid(path, &json!(name), msg));
    }
    if !name.contains('/') && name != KUBERNETES_FINALIZER {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

impl Strategy for Namespaces {
    fn delete_collection(&self) -> bool {
        false
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_for_update(new, old)
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1123_label(name)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        o.insert("status".into(), json!({"phase": "Active"}));
        let spec = ensure_object(o.entry("spec").or_insert(Value::Null));
        let finalizers = spec.entry("finalizers").or_insert(json!([]));
        if !finalizers.is_array() {
            *finalizers = json!([]);
        }
        let list = finalizers.as_array_mut().expect("array");
        if !list.iter().any(|f| f == KUBERNETES_FINALIZER) {
            list.push(json!(KUBERNETES_FINALIZER));
        }
    }

    fn default(&self, obj: &mut Value) {
        let name = meta::name(obj).to_string();
        if !name.is_empty() {
            let md = meta::metadata_mut(obj);
            let labels = ensure_object(md.entry("labels").or_insert(Value::Null));
            labels.insert(NAME_LABEL.into(), json!(name));
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            if status
                .get("phase")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                status.insert("phase".into(), json!("Active"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(spec) = obj.get("spec") {
            for f in items(spec, "finalizers") {
                validate_finalizer(f.as_str().unwrap_or(""), "spec.finalizers", &mut causes);
            }
        }
        causes
    }

    fn deletion_blocked(&self, obj: &Value) -> bool {
        obj.get("spec")
            .map(|s| !items(s, "finalizers").is_empty())
            .unwrap_or(false)
    }

    fn mark_deleting(&self, obj: &mut Value) {
        let status = ensure_object(ensure_object(obj).entry("status").or_insert(Value::Null));
        status.insert("phase".into(), json!("Terminating"));
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "status.phase",
            meta::path_str(obj, "status.phase").to_string(),
        )]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Status",
            "string",
            "The status of the namespace",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        name_age_row(obj, vec![json!(meta::path_str(obj, "status.phase"))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str) -> Value {
        let mut ns = json!({"metadata": {"name": name}, "status": {"phase": "Terminating"}});
        RESOURCE.strategy.prepare_for_create(&mut ns);
        RESOURCE.strategy.default(&mut ns);
        ns
    }

    #[test]
    fn created_active_with_finalizer_and_name_label() {
        let ns = created("team-a");
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team-a");
        assert!(RESOURCE.strategy.deletion_blocked(&ns));
        assert_eq!(RESOURCE.strategy.row(&ns)[1], "Active");
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&ns),
            vec![("status.phase", "Active".to_string())]
        );
    }

    #[test]
    fn label_is_reset_on_update_and_names_are_labels() {
        let mut ns = json!({"metadata": {"name": "a", "labels": {NAME_LABEL: "other"}}});
        RESOURCE.strategy.default(&mut ns);
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "a");
        assert!(!RESOURCE.strategy.validate_name("a.b").is_empty());
        assert!(RESOURCE.strategy.validate_name("kube-system").is_empty());
    }

    #[test]
    fn rejects_unqualified_finalizers() {
        let ns = json!({"spec": {"finalizers": ["kubernetes", "foo", "example.com/x"]}});
        let c = RESOURCE.strategy.validate(&ns);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].display(),
            "spec.finalizers: Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    #[test]
    fn deleting_turns_terminating_and_update_keeps_finalizers() {
        let mut ns = created("x");
        RESOURCE.strategy.mark_deleting(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        let mut new = json!({"metadata": {"name": "x"}, "spec": {}});
        prepare_for_update(&mut new, &ns);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
    }
}
