//! core/v1 LimitRange.
//!
//! Container limits get Kubernetes' defaults (`default` from `max`, `defaultRequest`
//! from `default`, then from `min`); quantities are written back canonically. Types
//! and resource names are checked, and min <= defaultRequest <= default <= max. The
//! table is Kubernetes' default one (NAME, CREATED AT). A PUT may create a limit range.

use crate::podspec::{items, str_at};
use crate::quantity::{canonicalize_list, Quantity};
use crate::strategy::Strategy;
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "LimitRange",
    plural: "limitranges",
    singular: "limitrange",
    namespaced: true,
    short_names: &["limits"],
    categories: &[],
    subresources: &[],
    strategy: &LimitRanges,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::LimitRange>()),
    merge: Some(Root::MetadataOnly),
};

struct LimitRanges;

const LIMIT_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];
const LISTS: &[&str] = &[
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];

/// Standard resource names (`helper.IsStandardResourceName`).
fn is_standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "storage",
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
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

/// `validateResourceName`, plus the container-resource rule for Pod and Container
/// limits.
fn validate_resource_name(limit_type: &str, name: &str, path: &str, out: &mut Vec<Cause>) {
    let errs = validation::qualified_name(name);
    if !errs.is_empty() {
        for msg in errs {
            out.push(Cause::invalid(path, &json!(name), msg));
        }
        return;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "must be a standard resource type or fully qualified",
        ));
        return;
    }
    if matches!(limit_type, "Pod" | "Container")
        && !name.contains('/')
        && !matches!(name, "cpu" | "memory" | "ephemeral-storage")
        && !name.starts_with("hugepages-")
    {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "must be a standard resource for containers",
        ));
    }
}

/// Resources that may not be overcommitted (hugepages, extended resources): their
/// default and default request must be equal.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

fn parsed(limit: &Value, list: &str) -> BTreeMap<String, Quantity> {
    limit
        .get(list)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Quantity::from_json(v).ok().map(|q| (k.clone(), q)))
                .collect()
        })
        .unwrap_or_default()
}

fn fill_missing(item: &mut Map<String, Value>, target: &str, from: &str) {
    let Some(src) = item.get(from).and_then(Value::as_object).cloned() else {
        return;
    };
    let entry = item.entry(target).or_insert(json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    let dst = entry.as_object_mut().expect("object");
    for (k, v) in src {
        dst.entry(k).or_insert(v);
    }
    if dst.is_empty() {
        item.remove(target);
    }
}

impl Strategy for LimitRanges {
    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(limits) = obj
            .get_mut("spec")
            .and_then(|s| s.get_mut("limits"))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for item in limits.iter_mut().filter_map(Value::as_object_mut) {
            for list in LISTS {
                canonicalize_list(item.get_mut(*list));
            }
            if item.get("type").and_then(Value::as_str) == Some("Container") {
                fill_missing(item, "default", "max");
                fill_missing(item, "defaultRequest", "default");
                fill_missing(item, "defaultRequest", "min");
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let limits = obj.get("spec").map(|s| items(s, "limits")).unwrap_or(&[]);
        let mut seen_types = Vec::new();
        for (i, limit) in limits.iter().enumerate() {
            let path = format!("spec.limits[{i}]");
            let t = str_at(limit, "type");
            let type_errs = validation::qualified_name(t);
            for msg in &type_errs {
                out.push(Cause::invalid(format!("{path}.type"), &json!(t), msg));
            }
            if type_errs.is_empty() && !t.contains('/') && !LIMIT_TYPES.contains(&t) {
                out.push(Cause::invalid(
                    format!("{path}.type"),
                    &json!(t),
                    "must be a standard limit type or fully qualified",
                ));
            }
            if seen_types.contains(&t) {
                out.push(Cause::duplicate(format!("{path}.type"), &json!(t)));
            }
            seen_types.push(t);
            for list in LISTS {
                let Some(map) = limit.get(*list).and_then(Value::as_object) else {
                    continue;
                };
                if t == "Pod" && matches!(*list, "default" | "defaultRequest") {
                    if !map.is_empty() {
                        out.push(Cause::forbidden(
                            format!("{path}.{list}"),
                            "may not be specified when `type` is 'Pod'",
                        ));
                    }
                    continue;
                }
                for (k, v) in map {
                    let p = format!("{path}.{list}[{k}]");
                    validate_resource_name(t, k, &p, &mut out);
                    if let Err(e) = Quantity::from_json(v) {
                        out.push(Cause::invalid(p, v, e));
                    }
                }
            }
            let (max, min) = (parsed(limit, "max"), parsed(limit, "min"));
            let (def, def_req) = if t == "Pod" {
                (BTreeMap::new(), BTreeMap::new())
            } else {
                (parsed(limit, "default"), parsed(limit, "defaultRequest"))
            };
            let ratio = parsed(limit, "maxLimitRequestRatio");
            if t == "PersistentVolumeClaim"
                && !min.contains_key("storage")
                && !max.contains_key("storage")
            {
                out.push(crate::podspec::required_detail(
                    format!("{path}.limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
            let mut keys: Vec<&String> = max
                .keys()
                .chain(min.keys())
                .chain(def.keys())
                .chain(def_req.keys())
                .chain(ratio.keys())
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let at = |list: &str| format!("{path}.{list}[{k}]");
                let q = |v: &Quantity| json!(v.canonical());
                let (mn, mx, d, dr, r) = (
                    min.get(k),
                    max.get(k),
                    def.get(k),
                    def_req.get(k),
                    ratio.get(k),
                );
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    if mn > mx {
                        out.push(Cause::invalid(
                            at("min"),
                            &q(mn),
                            format!("min value {mn} is greater than max value {mx}"),
                        ));
                    }
                }
                if let (Some(dr), Some(mn)) = (dr, mn) {
                    if mn > dr {
                        out.push(Cause::invalid(
                            at("defaultRequest"),
                            &q(dr),
                            format!("min value {mn} is greater than default request value {dr}"),
                        ));
                    }
                }
                if let (Some(dr), Some(mx)) = (dr, mx) {
                    if dr > mx {
                        out.push(Cause::invalid(
                            at("defaultRequest"),
                            &q(dr),
                            format!("default request value {dr} is greater than max value {mx}"),
                        ));
                    }
                }
                if let (Some(dr), Some(d)) = (dr, d) {
                    if dr > d {
                        out.push(Cause::invalid(at("defaultRequest"), &q(dr), format!("default request value {dr} is greater than default limit value {d}")));
                    }
                }
                if let (Some(d), Some(mn)) = (d, mn) {
                    if mn > d {
                        out.push(Cause::invalid(
                            at("default"),
                            &q(mn),
                            format!("min value {mn} is greater than default value {d}"),
                        ));
                    }
                }
                if let (Some(d), Some(mx)) = (d, mx) {
                    if d > mx {
                        out.push(Cause::invalid(
                            at("default"),
                            &q(mx),
                            format!("default value {d} is greater than max value {mx}"),
                        ));
                    }
                }
                if let Some(r) = r {
                    if r.as_f64() < 1.0 {
                        out.push(Cause::invalid(
                            at("maxLimitRequestRatio"),
                            &q(r),
                            format!("ratio {r} is less than 1"),
                        ));
                    }
                    if let (Some(mn), Some(mx)) = (mn, mx) {
                        let limit = mx.as_f64() / mn.as_f64();
                        if r.as_f64() > limit {
                            out.push(Cause::invalid(
                                at("maxLimitRequestRatio"),
                                &q(r),
                                format!("ratio {r} is greater than max/min = {limit:.6}"),
                            ));
                        }
                    }
                }
                if let (Some(d), Some(dr)) = (d, dr) {
                    if !overcommit_allowed(k) && d != dr {
                        out.push(Cause::invalid(
                            at("defaultRequest"),
                            &q(dr),
                            format!(
                                "default value {d} must equal to defaultRequest value {dr} in {k}"
                            ),
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_defaults_follow_max_and_min() {
        let mut lr = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m", "ephemeral-storage": "1Gi"}},
            {"type": "Pod", "max": {"cpu": "4"}}
        ]}});
        RESOURCE.strategy.default(&mut lr);
        let c = &lr["spec"]["limits"][0];
        assert_eq!(c["default"], json!({"cpu": "2", "memory": "1Gi"}));
        assert_eq!(
            c["defaultRequest"],
            json!({"cpu": "2", "memory": "1Gi", "ephemeral-storage": "1Gi"})
        );
        assert!(lr["spec"]["limits"][1].get("default").is_none());
        assert!(RESOURCE.strategy.validate(&lr).is_empty());
        assert_eq!(RESOURCE.strategy.columns()[1].name, "Created At");
    }

    #[test]
    fn rejects_inverted_bounds_and_bad_types() {
        let lr = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Widget"},
            {"type": "PersistentVolumeClaim"}
        ]}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&lr)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
                "spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'",
                "spec.limits[2].type: Invalid value: \"Widget\": must be a standard limit type or fully qualified",
                "spec.limits[3].limits: Required value: either minimum or maximum storage value is required, but neither was provided",
            ]
        );
    }
}
