//! storage.k8s.io/v1 VolumeAttachment.
//!
//! A request to attach one volume (a PersistentVolume, or an inline volume spec) to one
//! node through a CSI driver; the external attacher reports in `/status` whether it is
//! attached. The spec never changes, and a create starts with an empty status, as in
//! Kubernetes' `ValidateVolumeAttachment` and its strategy.

use crate::kinds::csidrivers::driver_name_problems;
use crate::podspec::str_at;
use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "storage.k8s.io",
    version: "v1",
    kind: "VolumeAttachment",
    plural: "volumeattachments",
    singular: "volumeattachment",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &VolumeAttachments,
    typed: Some(Typed::of::<k8s_openapi::api::storage::v1::VolumeAttachment>()),
    merge: Some(Root::MetadataOnly),
};

struct VolumeAttachments;

/// `maxAttachedVolumeMetadataSize` and `maxVolumeErrorMessageSize`.
const MAX_METADATA_SIZE: usize = 256 * 1024;
const MAX_ERROR_MESSAGE: usize = 1024;
const EXACTLY_ONE: &str = "must specify exactly one of inlineVolumeSpec and persistentVolumeName";

fn validate_status(status: &Value, out: &mut Vec<Cause>) {
    if let Some(md) = status.get("attachmentMetadata").and_then(Value::as_object) {
        let size: usize = md
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > MAX_METADATA_SIZE {
            out.push(Cause::new(
                "FieldValueTooLong",
                "status.attachmentMetadata",
                format!("Too long: may not be more than {MAX_METADATA_SIZE} bytes"),
            ));
        }
    }
    for key in ["attachError", "detachError"] {
        let message = status.get(key).map_or("", |e| str_at(e, "message"));
        if message.len() > MAX_ERROR_MESSAGE {
            out.push(Cause::new(
                "FieldValueTooLong",
                format!("status.{key}.message"),
                format!("Too long: may not be more than {MAX_ERROR_MESSAGE} bytes"),
            ));
        }
    }
}

impl Strategy for VolumeAttachments {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"attached": false}));
        }
    }

    fn default(&self, obj: &mut Value) {
        // `attached` is a plain bool in Go: always shown.
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            status.entry("attached").or_insert(json!(false));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let attacher = str_at(spec, "attacher");
        if attacher.is_empty() {
            out.push(Cause::required("spec.attacher"));
        } else {
            out.extend(driver_name_problems(attacher, "spec.attacher"));
        }
        let source = spec.get("source").unwrap_or(&null);
        let pv = source.get("persistentVolumeName").filter(|v| !v.is_null());
        let inline = source.get("inlineVolumeSpec").filter(|v| !v.is_null());
        match (pv, inline) {
            (None, None) => out.push(Cause::new(
                "FieldValueRequired",
                "spec.source",
                format!("Required value: {EXACTLY_ONE}"),
            )),
            (Some(_), Some(_)) => out.push(Cause::forbidden("spec.source", EXACTLY_ONE)),
            (Some(pv), None) => {
                let name = pv.as_str().unwrap_or("");
                if name.is_empty() {
                    out.push(Cause::new(
                        "FieldValueRequired",
                        "spec.source.persistentVolumeName",
                        "Required value: must specify non empty persistentVolumeName",
                    ));
                } else {
                    for msg in validation::dns1123_subdomain(name) {
                        out.push(Cause::invalid("spec.source.persistentVolumeName", pv, msg));
                    }
                }
            }
            (None, Some(_)) => {}
        }
        let node = str_at(spec, "nodeName");
        for msg in validation::dns1123_subdomain(node) {
            out.push(Cause::invalid("spec.nodeName", &json!(node), msg));
        }
        if let Some(status) = obj.get("status") {
            validate_status(status, &mut out);
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let spec = |o: &Value| o.get("spec").cloned().unwrap_or(Value::Null);
        if spec(new) != spec(old) {
            return vec![Cause::immutable("spec", &spec(new))];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column {
                format: "name",
                ..Column::new("Attacher", "string", "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().")
            },
            Column::new("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
            Column::new("Node", "string", "nodeName represents the node that the volume should be attached to."),
            Column::new("Attached", "boolean", "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher."),
            Column::age(),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let pv = spec
            .pointer("/source/persistentVolumeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let attached = obj
            .pointer("/status/attached")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![
            name_cell(obj),
            json!(str_at(spec, "attacher")),
            json!(pv),
            json!(str_at(spec, "nodeName")),
            json!(attached),
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

    fn attachment(source: Value) -> Value {
        json!({"metadata": {"name": "va"}, "spec": {"attacher": "csi.example.com", "nodeName": "node-1", "source": source}})
    }

    #[test]
    fn exactly_one_source() {
        assert!(RESOURCE
            .strategy
            .validate(&attachment(json!({"persistentVolumeName": "pv-1"})))
            .is_empty());
        assert_eq!(
            shown(RESOURCE.strategy.validate(&attachment(json!({})))),
            ["spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"]
        );
        assert_eq!(
            shown(RESOURCE.strategy.validate(&attachment(
                json!({"persistentVolumeName": "pv", "inlineVolumeSpec": {}})
            ))),
            ["spec.source: Forbidden: must specify exactly one of inlineVolumeSpec and persistentVolumeName"]
        );
        let mut no_attacher = attachment(json!({"persistentVolumeName": "pv"}));
        no_attacher["spec"]["attacher"] = json!("");
        assert_eq!(
            shown(RESOURCE.strategy.validate(&no_attacher)),
            ["spec.attacher: Required value"]
        );
    }

    #[test]
    fn spec_is_immutable_and_status_starts_empty() {
        let old = attachment(json!({"persistentVolumeName": "pv-1"}));
        let new = attachment(json!({"persistentVolumeName": "pv-2"}));
        assert_eq!(RESOURCE.strategy.validate_update(&new, &old).len(), 1);
        let mut created = old.clone();
        created["status"] = json!({"attached": true});
        RESOURCE.strategy.prepare_for_create(&mut created);
        assert_eq!(created["status"], json!({"attached": false}));
        let row = RESOURCE.strategy.row(&created);
        assert_eq!(
            row[..5],
            [
                json!("va"),
                json!("csi.example.com"),
                json!("pv-1"),
                json!("node-1"),
                json!(false)
            ]
        );
    }
}
