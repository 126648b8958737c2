//! storage.k8s.io/v1 CSINode.
//!
//! The CSI drivers installed on one node (the object is named after the node), with the
//! node's ID for each driver, the topology keys it reports and how many volumes it can
//! attach. Written by the node's agent. Validation follows Kubernetes' `ValidateCSINode`:
//! driver names unique, a driver's node ID, topology keys and allocatable count never
//! change.

use crate::kinds::csidrivers::driver_name_problems;
use crate::podspec::{items, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "storage.k8s.io",
    version: "v1",
    kind: "CSINode",
    plural: "csinodes",
    singular: "csinode",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &CSINodes,
    typed: Some(Typed::of::<k8s_openapi::api::storage::v1::CSINode>()),
    merge: Some(Root::CSINode),
};

struct CSINodes;

/// `csiNodeIDLongerMaxLength`: the longer limit Kubernetes allows since 1.24.
const MAX_NODE_ID: usize = 256;

impl Strategy for CSINodes {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let drivers = obj.get("spec").map_or(&[][..], |s| items(s, "drivers"));
        let mut names: Vec<&str> = Vec::new();
        for (i, d) in drivers.iter().enumerate() {
            let path = format!("spec.drivers[{i}]");
            let name = str_at(d, "name");
            out.extend(driver_name_problems(name, &format!("{path}.name")));
            if names.contains(&name) {
                out.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            }
            names.push(name);
            let id = str_at(d, "nodeID");
            if id.is_empty() {
                out.push(Cause::required(format!("{path}.nodeID")));
            }
            if id.len() > MAX_NODE_ID {
                out.push(Cause::invalid(
                    format!("{path}.nodeID"),
                    &json!(id),
                    format!("must be {MAX_NODE_ID} characters or less"),
                ));
            }
            let keys = items(d, "topologyKeys");
            for (k, key) in keys.iter().enumerate() {
                let kp = format!("{path}.topologyKeys");
                let s = key.as_str().unwrap_or("");
                if s.is_empty() {
                    out.push(Cause::required(&kp));
                }
                if keys[..k].contains(key) {
                    out.push(Cause::duplicate(&kp, key));
                }
                for msg in validation::qualified_name(s) {
                    out.push(Cause::invalid(&kp, key, msg));
                }
            }
            if let Some(n) = d.pointer("/allocatable/count").and_then(Value::as_i64) {
                if n < 0 {
                    out.push(Cause::invalid(
                        format!("{path}.allocatable.count"),
                        &json!(n),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let drivers = |o: &Value| {
            o.get("spec")
                .map_or(Vec::new(), |s| items(s, "drivers").to_vec())
        };
        let old_drivers = drivers(old);
        for (i, d) in drivers(new).iter().enumerate() {
            let Some(before) = old_drivers
                .iter()
                .find(|o| str_at(o, "name") == str_at(d, "name"))
            else {
                continue;
            };
            for key in ["nodeID", "topologyKeys", "allocatable"] {
                let now = d.get(key).cloned().unwrap_or(Value::Null);
                if now != before.get(key).cloned().unwrap_or(Value::Null) {
                    out.push(Cause::immutable(format!("spec.drivers[{i}].{key}"), &now));
                }
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Drivers",
            "integer",
            "Drivers indicates the number of CSI drivers registered on the node",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let n = obj.get("spec").map_or(0, |s| items(s, "drivers").len());
        name_age_row(obj, vec![json!(n)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn node(drivers: Value) -> Value {
        json!({"metadata": {"name": "node-1"}, "spec": {"drivers": drivers}})
    }

    #[test]
    fn drivers_are_unique_and_complete() {
        let ok = node(
            json!([{"name": "a.csi.io", "nodeID": "n1", "topologyKeys": ["topology.kubernetes.io/zone"]}]),
        );
        assert!(RESOURCE.strategy.validate(&ok).is_empty());
        let bad = node(json!([
            {"name": "a.csi.io", "nodeID": "n1", "allocatable": {"count": -1}},
            {"name": "a.csi.io", "nodeID": "", "topologyKeys": ["k", "k"]},
        ]));
        assert_eq!(
            shown(RESOURCE.strategy.validate(&bad)),
            [
                "spec.drivers[0].allocatable.count: Invalid value: -1: must be greater than or equal to 0",
                "spec.drivers[1].name: Duplicate value: \"a.csi.io\"",
                "spec.drivers[1].nodeID: Required value",
                "spec.drivers[1].topologyKeys: Duplicate value: \"k\"",
            ]
        );
    }

    #[test]
    fn a_drivers_identity_is_immutable() {
        let old = node(json!([{"name": "a.csi.io", "nodeID": "n1"}]));
        let new = node(
            json!([{"name": "b.csi.io", "nodeID": "x"}, {"name": "a.csi.io", "nodeID": "n2"}]),
        );
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            ["spec.drivers[1].nodeID: Invalid value: \"n2\": field is immutable"]
        );
        assert_eq!(RESOURCE.strategy.row(&new)[1], json!(2));
    }
}
