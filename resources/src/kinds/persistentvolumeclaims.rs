//! core/v1 PersistentVolumeClaim.
//!
//! Created `Pending`; `volumeMode` defaults to `Filesystem`, quantities are written
//! back canonically. A claim needs access modes and a positive storage request. After
//! creation the spec is frozen except `volumeName` (set once, by binding),
//! `volumeAttributesClassName`, and the storage request of a bound claim, which may
//! not drop below the recorded capacity.

use crate::kinds::persistentvolumes::{
    access_modes_string, phase_cell, quantity_cell, storage_class, validate_access_modes,
    validate_mode_and_class,
};
use crate::podspec::{default_pvc_spec, ensure_object, items, str_at, validate_label_selector};
use crate::quantity::{canonicalize_list, validate_quantity_value, Quantity};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &PersistentVolumeClaims,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::PersistentVolumeClaim>()),
    merge: Some(Root::PersistentVolumeClaim),
};

struct PersistentVolumeClaims;

fn storage_request(obj: &Value) -> Option<&Value> {
    obj.get("spec")?
        .get("resources")?
        .get("requests")?
        .get("storage")
}

fn storage_quantity(v: Option<&Value>) -> Quantity {
    v.and_then(|v| Quantity::from_json(v).ok())
        .unwrap_or_else(Quantity::zero)
}

impl Strategy for PersistentVolumeClaims {
    fn prepare_for_create(&self, obj: &mut Value) {
        ensure_object(obj).insert("status".into(), json!({"phase": "Pending"}));
    }

    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        let spec = ensure_object(o.entry("spec").or_insert(Value::Null));
        default_pvc_spec(spec);
        if let Some(res) = spec.get_mut("resources").and_then(Value::as_object_mut) {
            canonicalize_list(res.get_mut("requests"));
            canonicalize_list(res.get_mut("limits"));
        }
        if let Some(status) = o.get_mut("status").and_then(Value::as_object_mut) {
            canonicalize_list(status.get_mut("capacity"));
            if status
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                status.insert("phase".into(), json!("Pending"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        let modes = items(spec, "accessModes");
        if modes.is_empty() {
            out.push(crate::podspec::required_detail(
                "spec.accessModes",
                "at least 1 access mode is required",
            ));
        }
        validate_access_modes(modes, &mut out);
        validate_label_selector(spec.get("selector"), "spec.selector", &mut out);
        // Kubernetes keys this path on `resources` itself.
        let path = "spec.resources[storage]";
        match storage_request(obj) {
            None => out.push(Cause::required(path)),
            Some(v) => match Quantity::from_json(v) {
                Ok(q) if q <= Quantity::zero() => {
                    out.push(Cause::invalid(
                        path,
                        &json!(q.canonical()),
                        "must be greater than zero",
                    ));
                }
                _ => {
                    validate_quantity_value("storage", v, path, &mut out);
                }
            },
        }
        for list in ["requests", "limits"] {
            let Some(map) = spec
                .get("resources")
                .and_then(|r| r.get(list))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (k, v) in map
                .iter()
                .filter(|(k, _)| k.as_str() != "storage" || list == "limits")
            {
                validate_quantity_value(k, v, &format!("spec.resources.{list}[{k}]"), &mut out);
            }
        }
        validate_mode_and_class(spec, &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut new_spec = new.get("spec").cloned().unwrap_or(json!({}));
        let mut old_spec = old.get("spec").cloned().unwrap_or(json!({}));
        if str_at(&old_spec, "volumeName").is_empty() {
            match new_spec.get("volumeName") {
                Some(v) => ensure_object(&mut old_spec).insert("volumeName".into(), v.clone()),
                None => ensure_object(&mut old_spec).remove("volumeName"),
            };
        }
        match old_spec.get("volumeAttributesClassName") {
            Some(v) => {
                ensure_object(&mut new_spec).insert("volumeAttributesClassName".into(), v.clone())
            }
            None => ensure_object(&mut new_spec).remove("volumeAttributesClassName"),
        };
        let bound = meta::path_str(new, "status.phase") == "Bound";
        if bound {
            let old_request = storage_request(old).cloned();
            if let Some(reqs) = new_spec
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
            {
                match old_request {
                    Some(v) => reqs.insert("storage".into(), v),
                    None => reqs.remove("storage"),
                };
            }
        }
        if new_spec != old_spec {
            out.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let new_size = storage_quantity(storage_request(new));
        let old_size = storage_quantity(storage_request(old));
        let status_size = storage_quantity(
            old.get("status")
                .and_then(|s| s.get("capacity"))
                .and_then(|c| c.get("storage")),
        );
        if new_size < old_size && new_size <= status_size {
            out.push(Cause::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new(
                "Status",
                "string",
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            Column::new(
                "Volume",
                "string",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            Column::new(
                "Capacity",
                "string",
                "capacity represents the actual resources of the underlying volume.",
            ),
            Column::new(
                "Access Modes",
                "string",
                "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1",
            ),
            Column::new("StorageClass", "string", "StorageClass of the pvc"),
            Column::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        ]);
        cols.push(
            Column::new(
                "VolumeMode",
                "string",
                "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.",
            )
            .wide(),
        );
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        let status = obj.get("status").unwrap_or(&empty);
        let volume = str_at(spec, "volumeName");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity_cell(status.get("capacity").and_then(|c| c.get("storage"))),
                access_modes_string(items(status, "accessModes")),
            )
        };
        let unset = |k: &str| match str_at(spec, k) {
            "" => "<unset>".to_string(),
            v => v.to_string(),
        };
        let mut row = name_age_row(
            obj,
            vec![
                json!(phase_cell(obj)),
                json!(volume),
                json!(capacity),
                json!(modes),
                json!(storage_class(obj)),
                json!(unset("volumeAttributesClassName")),
            ],
        );
        row.push(json!(unset("volumeMode")));
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc() -> Value {
        let mut pvc = json!({"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1000Mi"}}}});
        RESOURCE.strategy.prepare_for_create(&mut pvc);
        RESOURCE.strategy.default(&mut pvc);
        pvc
    }

    #[test]
    fn defaults_and_validates() {
        let pvc = pvc();
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        assert!(RESOURCE.strategy.validate(&pvc).is_empty());
        let bad = json!({"spec": {"resources": {"requests": {"storage": "0"}}}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&bad)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
    }

    #[test]
    fn spec_is_frozen_except_binding_and_bound_resize() {
        let old = pvc();
        let mut bind = old.clone();
        bind["spec"]["volumeName"] = json!("pv1");
        assert!(RESOURCE.strategy.validate_update(&bind, &old).is_empty());
        let mut resize = old.clone();
        resize["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            RESOURCE.strategy.validate_update(&resize, &old)[0].display(),
            "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
        );
        let mut bound_old = bind.clone();
        bound_old["status"] = json!({"phase": "Bound", "capacity": {"storage": "1000Mi"}});
        let mut grow = bound_old.clone();
        grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(RESOURCE
            .strategy
            .validate_update(&grow, &bound_old)
            .is_empty());
        let mut shrink = bound_old.clone();
        shrink["spec"]["resources"]["requests"]["storage"] = json!("500Mi");
        assert_eq!(
            RESOURCE.strategy.validate_update(&shrink, &bound_old)[0].field,
            "spec.resources.requests.storage"
        );
    }

    #[test]
    fn table_row_like_kubectl() {
        let mut pvc = pvc();
        pvc["spec"]["volumeName"] = json!("pv1");
        pvc["spec"]["storageClassName"] = json!("standard");
        pvc["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        let row = RESOURCE.strategy.row(&pvc);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(
            &row[1..7],
            &[
                json!("Bound"),
                json!("pv1"),
                json!("1Gi"),
                json!("RWO"),
                json!("standard"),
                json!("<unset>")
            ]
        );
        assert_eq!(row[8], "Filesystem");
    }
}
