//! core/v1 Node.
//!
//! Nodes may be created with their status (the kubelet registers that way).
//! `status.allocatable` defaults to `status.capacity`, quantities are written back in
//! canonical form, and `spec.podCIDR`/`spec.podCIDRs` are kept in sync. Taints,
//! resource quantities and pod CIDRs are validated; pod CIDRs and the provider ID
//! may only be set once.

use crate::kinds::services::{parse_ip, validate_cidr};
use crate::podspec::{items, str_at};
use crate::quantity::{canonicalize_list, validate_quantity_value};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::IpAddr;

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[Subresource::Status, Subresource::Proxy],
    strategy: &Nodes,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Node>()),
    merge: Some(Root::Node),
};

struct Nodes;

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `validateNodeTaints`. Kubernetes reports these under `metadata.taints`.
fn validate_taints(taints: &[Value], out: &mut Vec<Cause>) {
    let mut seen = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let path = format!("metadata.taints[{i}]");
        let key = str_at(t, "key");
        for msg in validation::qualified_name(key) {
            out.push(Cause::invalid(format!("{path}.key"), &json!(key), msg));
        }
        let value = str_at(t, "value");
        let errs = validation::label_value(value);
        if !errs.is_empty() {
            out.push(Cause::invalid(
                format!("{path}.value"),
                &json!(value),
                errs.join(";"),
            ));
        }
        let effect = str_at(t, "effect");
        if effect.is_empty() {
            out.push(Cause::required(format!("{path}.effect")));
        } else if !TAINT_EFFECTS.contains(&effect) {
            out.push(Cause::not_supported(
                format!("{path}.effect"),
                &json!(effect),
                TAINT_EFFECTS,
            ));
        }
        if !seen.insert((effect.to_string(), key.to_string())) {
            out.push(Cause::new(
                "FieldValueDuplicate",
                path,
                format!(
                    "Duplicate value: {}: taints must be unique by key and effect pair",
                    json!({"key": key, "value": value, "effect": effect})
                ),
            ));
        }
    }
}

fn is_ipv6_cidr(cidr: &str) -> bool {
    cidr.split('/')
        .next()
        .and_then(parse_ip)
        .is_some_and(|ip| matches!(ip, IpAddr::V6(_)))
}

/// kubectl's node STATUS: `Ready`/`NotReady`/`Unknown`, plus `SchedulingDisabled`.
fn status_cell(obj: &Value) -> String {
    let ready = obj
        .get("status")
        .map(|s| items(s, "conditions"))
        .unwrap_or(&[])
        .iter()
        .find(|c| str_at(c, "type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if obj
        .get("spec")
        .and_then(|s| s.get("unschedulable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role`.
fn roles_cell(obj: &Value) -> String {
    let mut roles: Vec<&str> = meta::labels(obj)
        .into_iter()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then_some(role)
            } else if k == "kubernetes.io/role" && !v.is_empty() {
                Some(v)
            } else {
                None
            }
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn address_cell(obj: &Value, kind: &str) -> String {
    obj.get("status")
        .map(|s| items(s, "addresses"))
        .unwrap_or(&[])
        .iter()
        .find(|a| str_at(a, "type") == kind)
        .map_or("<none>".to_string(), |a| str_at(a, "address").to_string())
}

fn node_info<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("status")
        .and_then(|s| s.get("nodeInfo"))
        .map_or("", |i| str_at(i, key))
}

fn pod_cidrs(obj: &Value) -> Vec<String> {
    obj.get("spec")
        .map(|s| items(s, "podCIDRs"))
        .unwrap_or(&[])
        .iter()
        .map(|c| c.as_str().unwrap_or("").to_string())
        .collect()
}

impl Strategy for Nodes {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let cidr = spec
                .get("podCIDR")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let cidrs_empty = spec
                .get("podCIDRs")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if cidrs_empty && !cidr.is_empty() {
                spec.insert("podCIDRs".into(), json!([cidr]));
            } else if let Some(first) = spec
                .get("podCIDRs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .cloned()
            {
                spec.insert("podCIDR".into(), first);
            }
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            canonicalize_list(status.get_mut("capacity"));
            canonicalize_list(status.get_mut("allocatable"));
            if status.get("allocatable").is_none_or(Value::is_null) {
                if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
                    status.insert("allocatable".into(), cap);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        if let Some(spec) = obj.get("spec") {
            validate_taints(items(spec, "taints"), &mut out);
        }
        if let Some(status) = obj.get("status") {
            for list in ["capacity", "allocatable"] {
                if let Some(map) = status.get(list).and_then(Value::as_object) {
                    for (k, v) in map {
                        validate_quantity_value(k, v, &format!("status.{list}.{k}"), &mut out);
                    }
                }
            }
        }
        let cidrs = pod_cidrs(obj);
        for (i, c) in cidrs.iter().enumerate() {
            validate_cidr(c, &format!("spec.podCIDRs[{i}]"), &mut out);
        }
        if cidrs.len() > 1 {
            let dual = cidrs.len() == 2 && is_ipv6_cidr(&cidrs[0]) != is_ipv6_cidr(&cidrs[1]);
            if !dual {
                out.push(Cause::invalid(
                    "spec.podCIDRs",
                    &json!(cidrs),
                    "may specify no more than one CIDR for each IP family",
                ));
            }
            let mut seen = HashSet::new();
            for (i, c) in cidrs.iter().enumerate() {
                if !seen.insert(c) {
                    out.push(Cause::duplicate(format!("spec.podCIDRs[{i}]"), &json!(c)));
                }
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let addresses = new
            .get("status")
            .map(|s| items(s, "addresses"))
            .unwrap_or(&[]);
        let mut seen = HashSet::new();
        for (i, a) in addresses.iter().enumerate() {
            if !seen.insert((str_at(a, "type"), str_at(a, "address"))) {
                out.push(Cause::duplicate(format!("status.addresses[{i}]"), a));
            }
        }
        let old_cidrs = pod_cidrs(old);
        if !old_cidrs.is_empty() && old_cidrs != pod_cidrs(new) {
            out.push(Cause::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let provider = |o: &Value| {
            o.get("spec")
                .map_or("", |s| str_at(s, "providerID"))
                .to_string()
        };
        let old_provider = provider(old);
        if !old_provider.is_empty() && old_provider != provider(new) {
            out.push(Cause::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        let external = |o: &Value| o.get("spec").and_then(|s| s.get("externalID")).cloned();
        if external(new) != external(old) {
            out.push(Cause::forbidden("spec.externalID", "may not be updated"));
        }
        out
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let unschedulable = obj
            .get("spec")
            .and_then(|s| s.get("unschedulable"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![("spec.unschedulable", unschedulable.to_string())]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new("Status", "string", "The status of the node"),
            Column::new("Roles", "string", "The roles of the node"),
        ]);
        cols.push(Column::new(
            "Version",
            "string",
            "Kubelet Version reported by the node.",
        ));
        let addresses = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses";
        cols.push(Column::new("Internal-IP", "string", addresses).wide());
        cols.push(Column::new("External-IP", "string", addresses).wide());
        cols.push(
            Column::new(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            )
            .wide(),
        );
        cols.push(
            Column::new(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            )
            .wide(),
        );
        cols.push(
            Column::new(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            )
            .wide(),
        );
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let or_unknown = |s: &str| json!(if s.is_empty() { "<unknown>" } else { s });
        let mut row = name_age_row(obj, vec![json!(status_cell(obj)), json!(roles_cell(obj))]);
        row.push(json!(node_info(obj, "kubeletVersion")));
        row.push(json!(address_cell(obj, "InternalIP")));
        row.push(json!(address_cell(obj, "ExternalIP")));
        row.push(or_unknown(node_info(obj, "osImage")));
        row.push(or_unknown(node_info(obj, "kernelVersion")));
        row.push(or_unknown(node_info(obj, "containerRuntimeVersion")));
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Value {
        json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"podCIDR": "10.244.0.0/24", "unschedulable": true},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"}
            }
        })
    }

    #[test]
    fn defaults_allocatable_and_cidrs() {
        let mut n = node();
        RESOURCE.strategy.default(&mut n);
        assert_eq!(n["status"]["allocatable"], n["status"]["capacity"]);
        assert_eq!(n["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
        assert!(RESOURCE.strategy.validate(&n).is_empty());
    }

    #[test]
    fn table_row_like_kubectl() {
        let n = node();
        let row = RESOURCE.strategy.row(&n);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(
            &row[1..3],
            &[json!("Ready,SchedulingDisabled"), json!("control-plane")]
        );
        assert_eq!(
            &row[4..],
            &[
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&n),
            vec![("spec.unschedulable", "true".to_string())]
        );
    }

    #[test]
    fn rejects_bad_taints_and_quantities() {
        let n = json!({"spec": {"taints": [
            {"key": "a", "effect": "Sometimes"},
            {"key": "b", "effect": "NoSchedule"},
            {"key": "b", "effect": "NoSchedule"}]},
            "status": {"capacity": {"pods": "1.5"}}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&n)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "metadata.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "metadata.taints[2]: Duplicate value: {\"key\":\"b\",\"value\":\"\",\"effect\":\"NoSchedule\"}: taints must be unique by key and effect pair",
                "status.capacity.pods: Invalid value: \"1500m\": must be an integer",
            ]
        );
    }

    #[test]
    fn pod_cidrs_are_set_once() {
        let mut old = node();
        RESOURCE.strategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["podCIDRs"] = json!(["10.245.0.0/24"]);
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &old)[0].display(),
            "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
        );
    }
}
