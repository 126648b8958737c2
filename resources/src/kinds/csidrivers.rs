//! storage.k8s.io/v1 CSIDriver.
//!
//! What the cluster should know about an installed CSI driver: whether volumes need
//! attaching, what a mount is told about its pod, which tokens it gets, which volume
//! lifecycles it supports. Named after the driver. Defaults and validation follow
//! Kubernetes' `SetDefaults_CSIDriver` and `ValidateCSIDriver`: `attachRequired` and
//! `volumeLifecycleModes` never change.

use crate::podspec::{default_field, ensure_object, items, str_at};
use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "storage.k8s.io",
    version: "v1",
    kind: "CSIDriver",
    plural: "csidrivers",
    singular: "csidriver",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &CSIDrivers,
    typed: Some(Typed::of::<k8s_openapi::api::storage::v1::CSIDriver>()),
    merge: Some(Root::CSIDriver),
};

struct CSIDrivers;

const FS_GROUP_POLICIES: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];
const LIFECYCLE_MODES: &[&str] = &["Persistent", "Ephemeral"];
/// Token lifetimes: at least ten minutes, below 2^32 seconds.
const MIN_TOKEN_SECONDS: i64 = 600;
const MAX_TOKEN_SECONDS: i64 = 1 << 32;

/// `ValidateCSIDriverName`: at most 63 characters, a DNS subdomain when lowercased.
pub fn driver_name_problems(name: &str, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if name.is_empty() {
        out.push(Cause::required(path));
    }
    if name.len() > 63 {
        out.push(Cause::new(
            "FieldValueTooLong",
            path,
            "Too long: may not be more than 63 bytes",
        ));
    }
    for msg in validation::dns1123_subdomain(&name.to_lowercase()) {
        out.push(Cause::invalid(path, &json!(name), msg));
    }
    out
}

impl Strategy for CSIDrivers {
    fn validate_name(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if name.len() > 63 {
            out.push("must be no more than 63 characters".to_string());
        }
        out.extend(validation::dns1123_subdomain(&name.to_lowercase()));
        out
    }

    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(json!({})));
        default_field(spec, "attachRequired", json!(true));
        default_field(spec, "podInfoOnMount", json!(false));
        default_field(spec, "storageCapacity", json!(false));
        default_field(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
        let modes_empty = spec
            .get("volumeLifecycleModes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if modes_empty {
            spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
        }
        default_field(spec, "requiresRepublish", json!(false));
        default_field(spec, "seLinuxMount", json!(false));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        // Kubernetes spells the first path this way.
        for (key, path) in [
            ("attachRequired", "spec.attachedRequired"),
            ("podInfoOnMount", "spec.podInfoOnMount"),
            ("storageCapacity", "spec.storageCapacity"),
            ("requiresRepublish", "spec.requiresRepublish"),
        ] {
            if spec.get(key).is_none_or(Value::is_null) {
                out.push(Cause::required(path));
            }
        }
        if let Some(p) = spec.get("fsGroupPolicy").and_then(Value::as_str) {
            if !FS_GROUP_POLICIES.contains(&p) {
                out.push(Cause::not_supported(
                    "spec.fsGroupPolicy",
                    &json!(p),
                    FS_GROUP_POLICIES,
                ));
            }
        }
        let mut audiences: Vec<&str> = Vec::new();
        for (i, t) in items(spec, "tokenRequests").iter().enumerate() {
            let path = format!("spec.tokenRequests[{i}]");
            let audience = str_at(t, "audience");
            if audiences.contains(&audience) {
                out.push(Cause::duplicate(
                    format!("{path}.audience"),
                    &json!(audience),
                ));
            }
            audiences.push(audience);
            if let Some(secs) = t.get("expirationSeconds").and_then(Value::as_i64) {
                let detail = if secs < MIN_TOKEN_SECONDS {
                    Some("may not specify a duration less than 10 minutes")
                } else if secs >= MAX_TOKEN_SECONDS {
                    Some("may not specify a duration larger than 2^32 seconds")
                } else {
                    None
                };
                if let Some(d) = detail {
                    out.push(Cause::invalid(
                        format!("{path}.expirationSeconds"),
                        &json!(secs),
                        d,
                    ));
                }
            }
        }
        for mode in items(spec, "volumeLifecycleModes") {
            let m = mode.as_str().unwrap_or("");
            if !LIFECYCLE_MODES.contains(&m) {
                out.push(Cause::not_supported(
                    "spec.volumeLifecycleModes",
                    mode,
                    LIFECYCLE_MODES,
                ));
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        for key in ["attachRequired", "volumeLifecycleModes"] {
            let at = |o: &Value| {
                o.pointer(&format!("/spec/{key}"))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            if at(new) != at(old) {
                out.push(Cause::immutable(format!("spec.{key}"), &at(new)));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting. The CSI external-attacher coordinates with CSI volume driver and updates the volumeattachment status when the attach operation is complete. If the value is specified to false, the attach operation will be skipped. Otherwise the attach operation will be called.\n\nThis field is immutable."),
            Column::new("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true. If set to false, pod information will not be passed on mount. Default is false."),
            Column::new("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true."),
            Column::new("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication. Kubelet will pass the tokens in VolumeContext in the CSI NodePublishVolume calls. The CSI driver should parse and validate the following VolumeContext."),
            Column::new("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false."),
            Column::new("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports. The default if the list is empty is \"Persistent\", which is the usage defined by the CSI specification and implemented in Kubernetes via the usual PV/PVC mechanism."),
            Column::age(),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let flag = |k: &str, d: bool| spec.get(k).and_then(Value::as_bool).unwrap_or(d);
        let tokens = match spec.get("tokenRequests").and_then(Value::as_array) {
            None => "<unset>".to_string(),
            Some(ts) => ts
                .iter()
                .map(|t| str_at(t, "audience"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let modes: Vec<&str> = items(spec, "volumeLifecycleModes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let modes = if modes.is_empty() {
            "<none>".to_string()
        } else {
            modes.join(",")
        };
        vec![
            name_cell(obj),
            json!(flag("attachRequired", true)),
            json!(flag("podInfoOnMount", false)),
            json!(flag("storageCapacity", false)),
            json!(tokens),
            json!(flag("requiresRepublish", false)),
            json!(modes),
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

    fn driver(spec: Value) -> Value {
        let mut d = json!({"metadata": {"name": "hostpath.csi.k8s.io"}, "spec": spec});
        RESOURCE.strategy.default(&mut d);
        d
    }

    #[test]
    fn defaults_as_kubernetes() {
        let d = driver(json!({}));
        assert_eq!(
            d["spec"],
            json!({"attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
                "fsGroupPolicy": "ReadWriteOnceWithFSType", "volumeLifecycleModes": ["Persistent"],
                "requiresRepublish": false, "seLinuxMount": false})
        );
        assert!(RESOURCE.strategy.validate(&d).is_empty());
    }

    #[test]
    fn validation_messages() {
        let d = driver(
            json!({"fsGroupPolicy": "Some", "volumeLifecycleModes": ["Forever"],
            "tokenRequests": [{"audience": "a", "expirationSeconds": 60}, {"audience": "a"}]}),
        );
        assert_eq!(
            shown(RESOURCE.strategy.validate(&d)),
            [
                "spec.fsGroupPolicy: Unsupported value: \"Some\": supported values: \"File\", \"None\", \"ReadWriteOnceWithFSType\"",
                "spec.tokenRequests[0].expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                "spec.tokenRequests[1].audience: Duplicate value: \"a\"",
                "spec.volumeLifecycleModes: Unsupported value: \"Forever\": supported values: \"Persistent\", \"Ephemeral\"",
            ]
        );
        let long = "a".repeat(64);
        assert_eq!(RESOURCE.strategy.validate_name(&long).len(), 1);
        assert!(RESOURCE
            .strategy
            .validate_name("csi.example.com")
            .is_empty());
    }

    #[test]
    fn attach_required_and_modes_are_immutable() {
        let old = driver(json!({}));
        let mut new = driver(json!({"attachRequired": false}));
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            ["spec.attachRequired: Invalid value: false: field is immutable"]
        );
        new["spec"]["attachRequired"] = json!(true);
        new["spec"]["podInfoOnMount"] = json!(true);
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn table_row() {
        let d = driver(json!({"tokenRequests": [{"audience": "vault"}]}));
        let row = RESOURCE.strategy.row(&d);
        assert_eq!(
            row[..7],
            [
                json!("hostpath.csi.k8s.io"),
                json!(true),
                json!(false),
                json!(false),
                json!("vault"),
                json!(false),
                json!("Persistent")
            ]
        );
    }
}
