//! core/v1 ResourceQuota.
//!
//! Created with an empty status (the quota controller fills it); quantities are
//! written back canonically. Resource names must be standard quota resources or fully
//! qualified, quantities non-negative (whole for object counts); scopes must be known
//! and not conflict, and cannot change after creation.

use crate::podspec::{ensure_object, items, str_at};
use crate::quantity::{canonicalize_list, validate_quantity_value, Quantity};
use crate::strategy::{name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "ResourceQuota",
    plural: "resourcequotas",
    singular: "resourcequota",
    namespaced: true,
    short_names: &["quota"],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &ResourceQuotas,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::ResourceQuota>()),
    merge: Some(Root::MetadataOnly),
};

struct ResourceQuotas;

const STANDARD_QUOTA: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];
const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

fn is_hugepages(name: &str) -> bool {
    let bare = name
        .strip_prefix("requests.")
        .or_else(|| name.strip_prefix("limits."))
        .unwrap_or(name);
    bare.starts_with("hugepages-")
}

fn is_standard_quota(name: &str) -> bool {
    STANDARD_QUOTA.contains(&name) || (is_hugepages(name) && !name.starts_with("limits."))
}

/// `ValidateResourceQuotaResourceName`.
pub(crate) fn validate_quota_resource_name(name: &str, path: &str, out: &mut Vec<Cause>) {
    let errs = validation::qualified_name(name);
    for msg in &errs {
        out.push(Cause::invalid(path, &json!(name), msg));
    }
    let standard = is_standard_quota(name) || is_hugepages(name) || name == "storage";
    if errs.is_empty() && !name.contains('/') && !standard {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') && !is_standard_quota(name) {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "must be a standard resource for quota",
        ));
    }
}

fn validate_hard(list: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(map) = list.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        let p = format!("{path}[{k}]");
        validate_quota_resource_name(k, &p, out);
        validate_quantity_value(k, v, &p, out);
    }
}

fn scopes(obj: &Value) -> Vec<String> {
    obj.get("spec")
        .map(|s| items(s, "scopes"))
        .unwrap_or(&[])
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect()
}

fn conflicting(set: &BTreeSet<&str>) -> bool {
    (set.contains("BestEffort") && set.contains("NotBestEffort"))
        || (set.contains("Terminating") && set.contains("NotTerminating"))
}

impl Strategy for ResourceQuotas {
    fn prepare_for_create(&self, obj: &mut Value) {
        ensure_object(obj).insert("status".into(), json!({}));
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            canonicalize_list(spec.get_mut("hard"));
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            canonicalize_list(status.get_mut("hard"));
            canonicalize_list(status.get_mut("used"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        validate_hard(spec.get("hard"), "spec.hard", &mut out);
        let scopes = scopes(obj);
        let scope_set: BTreeSet<&str> = scopes.iter().map(String::as_str).collect();
        for s in &scopes {
            if !SCOPES.contains(&s.as_str()) {
                out.push(Cause::invalid(
                    "spec.scopes",
                    &json!(scopes),
                    "unsupported scope",
                ));
            }
        }
        if conflicting(&scope_set) {
            out.push(Cause::invalid(
                "spec.scopes",
                &json!(scopes),
                "conflicting scopes",
            ));
        }
        if let Some(sel) = spec.get("scopeSelector").filter(|v| !v.is_null()) {
            let path = "spec.scopeSelector.matchExpressions";
            let mut names = BTreeSet::new();
            for e in items(sel, "matchExpressions") {
                let scope = str_at(e, "scopeName");
                names.insert(scope);
                if !SCOPES.contains(&scope) {
                    out.push(Cause::invalid(
                        format!("{path}.scopeName"),
                        &json!(scope),
                        "unsupported scope",
                    ));
                }
                let op = str_at(e, "operator");
                let exists_only = matches!(
                    scope,
                    "BestEffort"
                        | "NotBestEffort"
                        | "Terminating"
                        | "NotTerminating"
                        | "CrossNamespacePodAffinity"
                );
                if exists_only && op != "Exists" {
                    out.push(Cause::invalid(
                        format!("{path}.operator"),
                        &json!(op),
                        "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                    ));
                }
                let values = items(e, "values");
                match op {
                    "In" | "NotIn" if values.is_empty() => out.push(crate::podspec::required_detail(
                        format!("{path}.values"),
                        "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                    )),
                    "Exists" | "DoesNotExist" if !values.is_empty() => out.push(Cause::invalid(
                        format!("{path}.values"),
                        &json!(values),
                        "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                    )),
                    "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                    _ => out.push(Cause::invalid(
                        format!("{path}.operator"),
                        &json!(op),
                        "not a valid selector operator",
                    )),
                }
            }
            if conflicting(&names) {
                out.push(Cause::invalid(path, &json!(scopes), "conflicting scopes"));
            }
        }
        if let Some(status) = obj.get("status") {
            validate_hard(status.get("hard"), "status.hard", &mut out);
            validate_hard(status.get("used"), "status.used", &mut out);
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let n: BTreeSet<String> = scopes(new).into_iter().collect();
        let o: BTreeSet<String> = scopes(old).into_iter().collect();
        if n != o {
            return vec![Cause::immutable("spec.scopes", &json!(scopes(new)))];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::age(),
            Column::new(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            Column::new(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ]
    }

    /// kubectl's `printResourceQuota`: `name: used/hard` for each hard limit, the
    /// `limits.*` ones in the LIMIT column.
    fn row(&self, obj: &Value) -> TableRow {
        let empty = json!({});
        let status = obj.get("status").unwrap_or(&empty);
        let hard = status.get("hard").and_then(Value::as_object);
        let mut names: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
        names.sort();
        let (mut request, mut limit) = (Vec::new(), Vec::new());
        for name in names {
            let q = |list: &str| {
                status
                    .get(list)
                    .and_then(|l| l.get(name.as_str()))
                    .and_then(|v| Quantity::from_json(v).ok())
                    .unwrap_or_else(Quantity::zero)
                    .canonical()
            };
            let cell = format!("{name}: {}/{}", q("used"), q("hard"));
            let is_limit = name.split('.').count() > 1 && name.split('.').next() == Some("limits");
            if is_limit {
                limit.push(cell);
            } else {
                request.push(cell);
            }
        }
        let mut row = name_age_row(obj, vec![]);
        row.push(json!(request.join(", ")));
        row.push(json!(limit.join(", ")));
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_quantities_and_scopes() {
        let q = json!({"spec": {"hard": {"pods": "10", "cpu": "-1", "widgets": "1", "count/deployments.apps": "0.5"},
            "scopes": ["BestEffort", "NotBestEffort"]}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&q)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
                "spec.hard[count/deployments.apps]: Invalid value: \"500m\": must be an integer",
                "spec.scopes: Invalid value: [\"BestEffort\",\"NotBestEffort\"]: conflicting scopes",
            ]
        );
    }

    #[test]
    fn defaults_status_and_scopes_are_immutable() {
        let mut q =
            json!({"spec": {"hard": {"requests.cpu": "0.5"}}, "status": {"used": {"x": 1}}});
        RESOURCE.strategy.prepare_for_create(&mut q);
        RESOURCE.strategy.default(&mut q);
        assert_eq!(q["status"], json!({}));
        assert_eq!(q["spec"]["hard"]["requests.cpu"], "500m");
        let mut new = q.clone();
        new["spec"]["scopes"] = json!(["BestEffort"]);
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &q)[0].display(),
            "spec.scopes: Invalid value: [\"BestEffort\"]: field is immutable"
        );
    }

    #[test]
    fn table_row_like_kubectl() {
        let q = json!({"metadata": {"name": "compute"}, "status": {
            "hard": {"requests.cpu": "1", "limits.memory": "2Gi", "pods": "10"},
            "used": {"requests.cpu": "500m", "pods": "3"}}});
        let row = RESOURCE.strategy.row(&q);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(row[2], "pods: 3/10, requests.cpu: 500m/1");
        assert_eq!(row[3], "limits.memory: 0/2Gi");
    }
}
