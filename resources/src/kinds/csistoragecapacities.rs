//! storage.k8s.io/v1 CSIStorageCapacity.
//!
//! How much a CSI driver can provision for one storage class in one topology segment
//! (the nodes `nodeTopology` selects), published for the scheduler. Validation follows
//! Kubernetes' `ValidateCSIStorageCapacity`: the inputs of the capacity query
//! (`nodeTopology`, `storageClassName`) never change.

use crate::podspec::{
    parse_quantity, quantity_text, str_at, validate_label_selector, QUANTITY_REGEX_MSG,
};
use crate::strategy::Strategy;
use crate::table::{name_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "storage.k8s.io",
    version: "v1",
    kind: "CSIStorageCapacity",
    plural: "csistoragecapacities",
    singular: "csistoragecapacity",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &CSIStorageCapacities,
    typed: Some(Typed::of::<k8s_openapi::api::storage::v1::CSIStorageCapacity>()),
    merge: Some(Root::MetadataOnly),
};

struct CSIStorageCapacities;

/// `ValidateNonnegativeQuantity` for an optional quantity field.
fn nonnegative_quantity(obj: &Value, key: &str, out: &mut Vec<Cause>) {
    let Some(q) = obj.get(key).filter(|q| !q.is_null()) else {
        return;
    };
    match parse_quantity(q) {
        None => out.push(Cause::invalid(
            key,
            &json!(quantity_text(q)),
            QUANTITY_REGEX_MSG,
        )),
        Some(v) if v < 0 => out.push(Cause::invalid(
            key,
            &json!(quantity_text(q)),
            "must be greater than or equal to 0",
        )),
        Some(_) => {}
    }
}

impl Strategy for CSIStorageCapacities {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        validate_label_selector(obj.get("nodeTopology"), "nodeTopology", &mut out);
        let class = str_at(obj, "storageClassName");
        for msg in validation::dns1123_subdomain(class) {
            out.push(Cause::invalid("storageClassName", &json!(class), msg));
        }
        nonnegative_quantity(obj, "capacity", &mut out);
        nonnegative_quantity(obj, "maximumVolumeSize", &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        for key in ["nodeTopology", "storageClassName"] {
            let now = new.get(key).cloned().unwrap_or(Value::Null);
            if now != old.get(key).cloned().unwrap_or(Value::Null) {
                out.push(Cause::immutable(key, &now));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("StorageClassName", "string", "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable."),
            Column::new("Capacity", "string", "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.\n\nThe semantic is currently (CSI spec 1.2) defined as: The available capacity, in bytes, of the storage that can be used to provision volumes. If not set, that information is currently unavailable."),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let capacity = match obj.get("capacity") {
            Some(q) if !q.is_null() => quantity_text(q),
            _ => "<unset>".to_string(),
        };
        vec![
            name_cell(obj),
            json!(str_at(obj, "storageClassName")),
            json!(capacity),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    #[test]
    fn validates_class_and_quantities() {
        let ok = json!({"metadata": {"name": "c"}, "storageClassName": "fast", "capacity": "10Gi",
            "nodeTopology": {"matchLabels": {"topology.kubernetes.io/zone": "a"}}});
        assert!(RESOURCE.strategy.validate(&ok).is_empty());
        let bad = json!({"storageClassName": "", "capacity": "-1", "maximumVolumeSize": "lots"});
        let causes = shown(RESOURCE.strategy.validate(&bad));
        assert_eq!(causes.len(), 3, "{causes:?}");
        assert!(causes[0].starts_with("storageClassName: Invalid value: \"\""));
        assert_eq!(
            causes[1],
            "capacity: Invalid value: \"-1\": must be greater than or equal to 0"
        );
        assert!(causes[2]
            .starts_with("maximumVolumeSize: Invalid value: \"lots\": quantities must match"));
    }

    #[test]
    fn query_inputs_are_immutable() {
        let old = json!({"storageClassName": "fast", "capacity": "1Gi"});
        let mut new = json!({"storageClassName": "slow", "capacity": "2Gi"});
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            ["storageClassName: Invalid value: \"slow\": field is immutable"]
        );
        new["storageClassName"] = json!("fast");
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());
        assert_eq!(RESOURCE.strategy.row(&new)[2], json!("2Gi"));
        assert_eq!(RESOURCE.strategy.row(&json!({}))[2], json!("<unset>"));
    }
}
