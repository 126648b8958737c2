//! core/v1 PersistentVolume.
//!
//! Created `Pending` (with `lastPhaseTransitionTime`, as Kubernetes 1.33 does);
//! reclaim policy defaults to `Retain`, volume mode to `Filesystem`, capacities are
//! written back canonically. Validation covers capacity, access modes, exactly one
//! volume source and the common sources' required fields; the source and volume mode
//! are immutable.

use crate::podspec::{ensure_object, items, str_at};
use crate::quantity::{canonicalize_list, validate_quantity_value, Quantity};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "PersistentVolume",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &PersistentVolumes,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::PersistentVolume>()),
    merge: Some(Root::MetadataOnly),
};

struct PersistentVolumes;

/// `supportedAccessModes`, sorted as Kubernetes lists them in errors.
pub(crate) const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
pub(crate) const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
/// The `PersistentVolumeSource` members.
const SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "iscsi",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];
pub(crate) const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP` in that order, each once.
pub(crate) fn access_modes_string(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.iter().any(|x| x == m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The access-mode checks PVs and PVCs share.
pub(crate) fn validate_access_modes(modes: &[Value], out: &mut Vec<Cause>) {
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str().unwrap_or("")) {
            out.push(Cause::not_supported("spec.accessModes", m, ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        out.push(Cause::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// Volume mode and storage class checks PVs and PVCs share.
pub(crate) fn validate_mode_and_class(spec: &Value, out: &mut Vec<Cause>) {
    if let Some(mode) = spec.get("volumeMode").filter(|v| !v.is_null()) {
        if !VOLUME_MODES.contains(&mode.as_str().unwrap_or("")) {
            out.push(Cause::not_supported("spec.volumeMode", mode, VOLUME_MODES));
        }
    }
    if let Some(class) = spec.get("storageClassName").and_then(Value::as_str) {
        if !class.is_empty() {
            for msg in validation::dns1123_subdomain(class) {
                out.push(Cause::invalid("spec.storageClassName", &json!(class), msg));
            }
        }
    }
}

/// The storage class a PV or PVC names (the beta annotation wins, as in kubectl).
pub(crate) fn storage_class(obj: &Value) -> String {
    meta::string_map(obj, "annotations")
        .into_iter()
        .find(|(k, _)| *k == BETA_STORAGE_CLASS)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| {
            obj.get("spec")
                .map_or("", |s| str_at(s, "storageClassName"))
                .to_string()
        })
}

/// A quantity cell as Go's `Quantity.String()` prints it ("0" when unset).
pub(crate) fn quantity_cell(v: Option<&Value>) -> String {
    v.and_then(|v| Quantity::from_json(v).ok())
        .unwrap_or_else(Quantity::zero)
        .canonical()
}

/// `PHASE`, or `Terminating` once deletion started.
pub(crate) fn phase_cell(obj: &Value) -> String {
    if !meta::str_field(obj, "deletionTimestamp").is_empty() {
        return "Terminating".into();
    }
    meta::path_str(obj, "status.phase").to_string()
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn required_fields(spec: &Value, source: &str, fields: &[&str], out: &mut Vec<Cause>) {
    let Some(src) = spec.get(source) else {
        return;
    };
    for f in fields {
        if str_at(src, f).is_empty() {
            out.push(Cause::required(format!("spec.{source}.{f}")));
        }
    }
}

impl Strategy for PersistentVolumes {
    fn prepare_for_create(&self, obj: &mut Value) {
        ensure_object(obj).insert(
            "status".into(),
            json!({"phase": "Pending", "lastPhaseTransitionTime": now()}),
        );
    }

    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        let spec = ensure_object(o.entry("spec").or_insert(Value::Null));
        if spec
            .get("persistentVolumeReclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
        }
        if spec.get("volumeMode").is_none_or(Value::is_null) {
            spec.insert("volumeMode".into(), json!("Filesystem"));
        }
        canonicalize_list(spec.get_mut("capacity"));
        if let Some(hp) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            if hp.get("type").is_none_or(Value::is_null) {
                hp.insert("type".into(), json!(""));
            }
        }
        if let Some(status) = o.get_mut("status").and_then(Value::as_object_mut) {
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
        let capacity = spec.get("capacity").and_then(Value::as_object);
        match capacity {
            None => out.push(Cause::required("spec.capacity")),
            Some(c) if c.is_empty() => out.push(Cause::required("spec.capacity")),
            Some(_) => {}
        }
        if let Some(c) = capacity {
            if !c.contains_key("storage") || c.len() > 1 {
                out.push(Cause::not_supported(
                    "spec.capacity",
                    &spec["capacity"],
                    &["storage"],
                ));
            }
            if let Some(q) = c.get("storage") {
                validate_quantity_value("storage", q, "spec.capacity[storage]", &mut out);
            }
        }
        let modes = items(spec, "accessModes");
        if modes.is_empty() {
            out.push(Cause::required("spec.accessModes"));
        }
        validate_access_modes(modes, &mut out);
        let policy = str_at(spec, "persistentVolumeReclaimPolicy");
        if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
            out.push(Cause::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                &json!(policy),
                RECLAIM_POLICIES,
            ));
        }
        validate_mode_and_class(spec, &mut out);
        let present: Vec<&str> = SOURCES
            .iter()
            .copied()
            .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
            .collect();
        if present.is_empty() {
            out.push(crate::podspec::required_detail(
                "spec",
                "must specify a volume type",
            ));
        }
        for extra in present.iter().skip(1) {
            out.push(Cause::forbidden(
                format!("spec.{extra}"),
                "may not specify more than 1 volume type",
            ));
        }
        required_fields(spec, "hostPath", &["path"], &mut out);
        if let Some(t) = spec
            .get("hostPath")
            .and_then(|h| h.get("type"))
            .and_then(Value::as_str)
        {
            if !HOST_PATH_TYPES.contains(&t) {
                out.push(Cause::not_supported(
                    "spec.hostPath.type",
                    &json!(t),
                    HOST_PATH_TYPES,
                ));
            }
        }
        required_fields(spec, "nfs", &["server", "path"], &mut out);
        if let Some(p) = spec.get("nfs").map(|n| str_at(n, "path")) {
            if !p.is_empty() && !p.starts_with('/') {
                out.push(Cause::invalid(
                    "spec.nfs.path",
                    &json!(p),
                    "must be an absolute path",
                ));
            }
        }
        required_fields(spec, "local", &["path"], &mut out);
        if spec.get("local").is_some() && spec.get("nodeAffinity").is_none_or(Value::is_null) {
            out.push(crate::podspec::required_detail(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ));
        }
        required_fields(spec, "csi", &["driver", "volumeHandle"], &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let source = |o: &Value| -> Vec<(String, Value)> {
            SOURCES
                .iter()
                .filter_map(|s| {
                    o.get("spec")
                        .and_then(|sp| sp.get(*s))
                        .filter(|v| !v.is_null())
                        .map(|v| (s.to_string(), v.clone()))
                })
                .collect()
        };
        if source(new) != source(old) {
            out.push(Cause::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        let field = |o: &Value, k: &str| o.get("spec").and_then(|s| s.get(k)).cloned();
        if field(new, "volumeMode") != field(old, "volumeMode") {
            out.push(Cause::immutable(
                "spec.volumeMode",
                &field(new, "volumeMode").unwrap_or(Value::Null),
            ));
        }
        let old_affinity = field(old, "nodeAffinity").filter(|v| !v.is_null());
        if old_affinity.is_some() && field(new, "nodeAffinity") != old_affinity {
            out.push(Cause::invalid(
                "spec.nodeAffinity",
                &field(new, "nodeAffinity").unwrap_or(Value::Null),
                "field is immutable, except for updating from beta label to GA",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new(
                "Capacity",
                "string",
                "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity",
            ),
            Column::new(
                "Access Modes",
                "string",
                "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes",
            ),
            Column::new(
                "Reclaim Policy",
                "string",
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming",
            ),
            Column::new(
                "Status",
                "string",
                "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase",
            ),
            Column::new(
                "Claim",
                "string",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding",
            ),
            Column::new("StorageClass", "string", "StorageClass of the pv"),
            Column::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            Column::new(
                "Reason",
                "string",
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
        ]);
        cols.push(
            Column::new(
                "VolumeMode",
                "string",
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.",
            )
            .wide(),
        );
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        let claim = spec
            .get("claimRef")
            .filter(|c| c.is_object())
            .map_or(String::new(), |c| {
                format!("{}/{}", str_at(c, "namespace"), str_at(c, "name"))
            });
        let unset = |k: &str| match str_at(spec, k) {
            "" => "<unset>".to_string(),
            v => v.to_string(),
        };
        let mut row = name_age_row(
            obj,
            vec![
                json!(quantity_cell(
                    spec.get("capacity").and_then(|c| c.get("storage"))
                )),
                json!(access_modes_string(items(spec, "accessModes"))),
                json!(str_at(spec, "persistentVolumeReclaimPolicy")),
                json!(phase_cell(obj)),
                json!(claim),
                json!(storage_class(obj)),
                json!(unset("volumeAttributesClassName")),
                json!(meta::path_str(obj, "status.reason")),
            ],
        );
        row.push(json!(unset("volumeMode")));
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv() -> Value {
        let mut pv = json!({"metadata": {"name": "pv1"}, "spec": {
            "capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "hostPath": {"path": "/data"},
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "manual"}});
        RESOURCE.strategy.prepare_for_create(&mut pv);
        RESOURCE.strategy.default(&mut pv);
        pv
    }

    #[test]
    fn defaults_like_kubernetes() {
        let pv = pv();
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["capacity"]["storage"], "1536Mi");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(pv["status"]["lastPhaseTransitionTime"].is_string());
        assert!(RESOURCE.strategy.validate(&pv).is_empty());
    }

    #[test]
    fn rejects_missing_source_and_bad_modes() {
        let bad = json!({"spec": {"capacity": {"storage": "1Gi", "cpu": "1"},
            "accessModes": ["ReadWriteOncePod", "Sometimes"]}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&bad)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.capacity: Unsupported value: {\"storage\":\"1Gi\",\"cpu\":\"1\"}: supported values: \"storage\"",
                "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                "spec: Required value: must specify a volume type",
            ]
        );
    }

    #[test]
    fn source_is_immutable_and_row_matches_kubectl() {
        let old = pv();
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/other");
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &old)[0].field,
            "spec.persistentvolumesource"
        );
        let row = RESOURCE.strategy.row(&old);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(
            &row[1..9],
            &[
                json!("1536Mi"),
                json!("RWO,ROX"),
                json!("Retain"),
                json!("Pending"),
                json!("default/data"),
                json!("manual"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(row[10], "Filesystem");
    }
}
