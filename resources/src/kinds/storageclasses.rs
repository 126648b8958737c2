//! storage.k8s.io/v1 StorageClass.
//!
//! How volumes of a class are provisioned: by which provisioner, with which parameters,
//! reclaimed how and bound when. `reclaimPolicy` defaults to `Delete` and
//! `volumeBindingMode` to `Immediate`; the provisioner, its parameters, the reclaim
//! policy and the binding mode never change. A class annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` is the cluster's default: the
//! DefaultStorageClass admission plugin gives it to claims that name no class, and
//! `kubectl get` marks it `(default)`. Follows Kubernetes' `ValidateStorageClass`.

use crate::podspec::{default_field, ensure_object, items, str_at};
use crate::strategy::Strategy;
use crate::table::{age_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    singular: "storageclass",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    subresources: &[],
    strategy: &StorageClasses,
    typed: Some(Typed::of::<k8s_openapi::api::storage::v1::StorageClass>()),
    // mountOptions and allowedTopologies are atomic lists.
    merge: Some(Root::MetadataOnly),
};

struct StorageClasses;

/// The annotation that makes a class the default, and its beta predecessor, which
/// Kubernetes still honours.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// `storageutil.IsDefaultAnnotation`: whether `class` is marked as the default.
pub fn is_default(class: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| annotation(class, a) == Some("true"))
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
/// `maxProvisionerParameterLen` and `maxProvisionerParameterSize`.
const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

fn validate_parameters(obj: &Value, out: &mut Vec<Cause>) {
    let Some(params) = obj.get("parameters").and_then(Value::as_object) else {
        return;
    };
    if params.len() > MAX_PARAMETERS {
        out.push(Cause::new(
            "FieldValueTooLong",
            "parameters",
            format!("Too long: may not be more than {MAX_PARAMETERS} bytes"),
        ));
        return;
    }
    let mut total = 0;
    for (k, v) in params {
        if k.is_empty() {
            out.push(Cause::invalid(
                "parameters",
                &json!(k),
                "field can not be empty.",
            ));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > MAX_PARAMETERS_SIZE {
        out.push(Cause::new(
            "FieldValueTooLong",
            "parameters",
            format!("Too long: may not be more than {MAX_PARAMETERS_SIZE} bytes"),
        ));
    }
}

/// `validateAllowedTopologies`: each term has at least one requirement, each with a
/// label key and values; no term or value twice.
fn validate_allowed_topologies(obj: &Value, out: &mut Vec<Cause>) {
    let terms = items(obj, "allowedTopologies");
    for (i, term) in terms.iter().enumerate() {
        let path = format!("allowedTopologies[{i}]");
        let exprs = items(term, "matchLabelExpressions");
        if exprs.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                &path,
                "Required value: must contain at least one node selector requirement",
            ));
        }
        for (j, e) in exprs.iter().enumerate() {
            let ep = format!("{path}.matchLabelExpressions[{j}]");
            let key = str_at(e, "key");
            for msg in validation::qualified_name(key) {
                out.push(Cause::invalid(format!("{ep}.key"), &json!(key), msg));
            }
            let values = items(e, "values");
            if values.is_empty() {
                out.push(Cause::new(
                    "FieldValueRequired",
                    format!("{ep}.values"),
                    "Required value: must specify as least one value",
                ));
            }
            for (k, v) in values.iter().enumerate() {
                if values[..k].contains(v) {
                    out.push(Cause::duplicate(format!("{ep}.values[{k}]"), v));
                }
            }
        }
        if terms[..i].contains(term) {
            out.push(Cause::duplicate(&path, term));
        }
    }
}

impl Strategy for StorageClasses {
    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        default_field(o, "reclaimPolicy", json!("Delete"));
        default_field(o, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let provisioner = str_at(obj, "provisioner");
        if provisioner.is_empty() {
            out.push(Cause::required("provisioner"));
        } else {
            for msg in validation::qualified_name(&provisioner.to_lowercase()) {
                out.push(Cause::invalid("provisioner", &json!(provisioner), msg));
            }
        }
        validate_parameters(obj, &mut out);
        let policy = str_at(obj, "reclaimPolicy");
        if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
            out.push(Cause::not_supported(
                "reclaimPolicy",
                &json!(policy),
                RECLAIM_POLICIES,
            ));
        }
        match obj.get("volumeBindingMode").and_then(Value::as_str) {
            None => out.push(Cause::required("volumeBindingMode")),
            Some(m) if !BINDING_MODES.contains(&m) => out.push(Cause::not_supported(
                "volumeBindingMode",
                &json!(m),
                BINDING_MODES,
            )),
            Some(_) => {}
        }
        validate_allowed_topologies(obj, &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let field = |o: &Value, k: &str| o.get(k).cloned().unwrap_or(Value::Null);
        let params = |o: &Value| match o.get("parameters") {
            Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
            _ => Value::Null,
        };
        if params(new) != params(old) {
            out.push(Cause::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if str_at(new, "provisioner") != str_at(old, "provisioner") {
            out.push(Cause::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if str_at(new, "reclaimPolicy") != str_at(old, "reclaimPolicy") {
            out.push(Cause::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        let mode = field(new, "volumeBindingMode");
        if mode != field(old, "volumeBindingMode") {
            out.push(Cause::immutable("volumeBindingMode", &mode));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Provisioner", "string", "Indicates the type of the provisioner."),
            Column::new("ReclaimPolicy", "string", "Dynamically provisioned PersistentVolumes of this storage class are created with this reclaimPolicy. Defaults to Delete."),
            Column::new("VolumeBindingMode", "string", "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
            Column::new("AllowVolumeExpansion", "string", "AllowVolumeExpansion shows whether the storage class allow volume expand"),
            Column::age(),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let mut name = meta::name(obj).to_string();
        if is_default(obj) {
            name.push_str(" (default)");
        }
        let or = |k: &str, d: &'static str| match str_at(obj, k) {
            "" => d.to_string(),
            s => s.to_string(),
        };
        let expansion = obj
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![
            json!(name),
            json!(str_at(obj, "provisioner")),
            json!(or("reclaimPolicy", "Delete")),
            json!(or("volumeBindingMode", "Immediate")),
            json!(expansion),
            age_cell(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn class(provisioner: &str) -> Value {
        let mut sc = json!({"metadata": {"name": "fast"}, "provisioner": provisioner});
        RESOURCE.strategy.default(&mut sc);
        sc
    }

    #[test]
    fn defaults_reclaim_policy_and_binding_mode() {
        let sc = class("example.com/fast");
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(RESOURCE.strategy.validate(&sc).is_empty());
    }

    #[test]
    fn validation_follows_kubernetes() {
        let mut sc = class("");
        sc["reclaimPolicy"] = json!("Recycle");
        sc["volumeBindingMode"] = json!("Later");
        sc["parameters"] = json!({"": "x"});
        sc["allowedTopologies"] = json!([{"matchLabelExpressions": []}]);
        assert_eq!(
            shown(RESOURCE.strategy.validate(&sc)),
            [
                "provisioner: Required value",
                "parameters: Invalid value: \"\": field can not be empty.",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
                "allowedTopologies[0]: Required value: must contain at least one node selector requirement",
            ]
        );
        let bad = class("Not A Name!");
        assert!(shown(RESOURCE.strategy.validate(&bad))[0]
            .starts_with("provisioner: Invalid value: \"Not A Name!\""));
    }

    #[test]
    fn provisioner_parameters_and_policies_never_change() {
        let old = class("example.com/fast");
        let mut new = class("example.com/slow");
        new["parameters"] = json!({"type": "ssd"});
        new["reclaimPolicy"] = json!("Retain");
        new["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        let mut expanded = old.clone();
        expanded["allowVolumeExpansion"] = json!(true);
        expanded["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
        assert!(RESOURCE
            .strategy
            .validate_update(&expanded, &old)
            .is_empty());
    }

    #[test]
    fn table_marks_the_default_class() {
        let mut sc = class("rancher.io/local-path");
        sc["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
        sc["volumeBindingMode"] = json!("WaitForFirstConsumer");
        let row = RESOURCE.strategy.row(&sc);
        assert_eq!(
            row[..5],
            [
                json!("fast (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
        assert!(!is_default(&class("x.io/y")));
    }
}
