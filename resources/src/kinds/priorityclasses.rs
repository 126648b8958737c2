//! scheduling.k8s.io/v1 PriorityClass.
//!
//! Maps a class name to a pod priority. User classes go up to one billion; names with
//! the `system-` prefix are reserved for the two built-in classes the apiserver creates
//! at bootstrap ([`SYSTEM_CLASSES`]). `preemptionPolicy` defaults to
//! `PreemptLowerPriority`; `value` and `preemptionPolicy` never change. That at most one
//! class is `globalDefault`, and resolving a pod's `priorityClassName`, are admission's
//! job (the apiserver's `registry::priority`).

use crate::podspec::{default_field, ensure_object};
use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{meta, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    singular: "priorityclass",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    subresources: &[],
    strategy: &PriorityClasses,
    typed: Some(Typed::of::<k8s_openapi::api::scheduling::v1::PriorityClass>()),
    merge: Some(Root::MetadataOnly),
};

struct PriorityClasses;

/// `scheduling.HighestUserDefinablePriority`.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// `scheduling.SystemCriticalPriority`.
pub const SYSTEM_CRITICAL_PRIORITY: i64 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;
const SYSTEM_PREFIX: &str = "system-";
const POLICIES: &[&str] = &["PreemptLowerPriority", "Never"];

/// The built-in classes: name, value, description.
pub const SYSTEM_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        SYSTEM_CRITICAL_PRIORITY + 1000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        SYSTEM_CRITICAL_PRIORITY,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// A built-in class as the apiserver creates it.
pub fn system_class(name: &str, value: i64, description: &str) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": description,
        "preemptionPolicy": "PreemptLowerPriority",
    })
}

/// `IsKnownSystemPriorityClass`: why a `system-` name is not acceptable, if it is not.
fn system_class_error(name: &str, value: i64, global_default: bool) -> Option<String> {
    match SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) {
        None => Some(format!("{name} is not a known system priority class")),
        Some((_, v, _)) if *v != value => {
            Some(format!("value of {name} PriorityClass must be {v}"))
        }
        Some(_) if global_default => Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        )),
        Some(_) => None,
    }
}

fn value_of(obj: &Value) -> i64 {
    obj.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn global_default(obj: &Value) -> bool {
    obj.get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl Strategy for PriorityClasses {
    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        default_field(o, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        match obj.get("value") {
            Some(v) if v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) => {}
            None | Some(Value::Null) => {}
            Some(v) => out.push(Cause::invalid("value", v, "must be a 32-bit integer")),
        }
        let name = meta::name(obj);
        let value = value_of(obj);
        if name.starts_with(SYSTEM_PREFIX) {
            if let Some(err) = system_class_error(name, value, global_default(obj)) {
                out.push(Cause::forbidden(
                    "metadata.name",
                    format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {err}"),
                ));
            }
        } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
            out.push(Cause::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(p) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
            match p.as_str() {
                Some("") => out.push(Cause::required("preemptionPolicy")),
                Some(s) if POLICIES.contains(&s) => {}
                _ => out.push(Cause::not_supported("preemptionPolicy", p, POLICIES)),
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        if value_of(new) != value_of(old) {
            out.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        let policy = |o: &Value| o.get("preemptionPolicy").cloned().unwrap_or(Value::Null);
        if policy(new) != policy(old) {
            out.push(Cause::immutable("preemptionPolicy", &policy(new)));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Value",
                "integer",
                "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
            ),
            Column::new(
                "Global-Default",
                "boolean",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
            ),
            Column::age(),
            Column::new(
                "PreemptionPolicy",
                "string",
                "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
            ),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let policy = obj
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        vec![
            name_cell(obj),
            json!(value_of(obj)),
            json!(global_default(obj)),
            age_cell(obj),
            json!(policy),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn class(name: &str, value: i64) -> Value {
        let mut pc = json!({"metadata": {"name": name}, "value": value});
        RESOURCE.strategy.default(&mut pc);
        pc
    }

    #[test]
    fn defaults_preemption_policy() {
        let pc = class("high", 1000);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert!(RESOURCE.strategy.validate(&pc).is_empty());
        let mut never = json!({"metadata": {"name": "n"}, "value": 1, "preemptionPolicy": "Never"});
        RESOURCE.strategy.default(&mut never);
        assert_eq!(never["preemptionPolicy"], "Never");
    }

    #[test]
    fn user_values_are_capped_and_system_names_reserved() {
        assert_eq!(
            shown(RESOURCE.strategy.validate(&class("huge", 1_000_000_001))),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert!(RESOURCE
            .strategy
            .validate(&class("max", 1_000_000_000))
            .is_empty());
        assert_eq!(
            shown(RESOURCE.strategy.validate(&class("system-foo", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-foo is not a known system priority class"]
        );
        assert_eq!(
            shown(RESOURCE.strategy.validate(&class("system-node-critical", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        for (name, value, description) in SYSTEM_CLASSES {
            let mut pc = system_class(name, *value, description);
            RESOURCE.strategy.default(&mut pc);
            assert!(RESOURCE.strategy.validate(&pc).is_empty(), "{name}");
        }
        let bad = json!({"metadata": {"name": "p"}, "value": 1, "preemptionPolicy": "Sometimes"});
        assert_eq!(
            shown(RESOURCE.strategy.validate(&bad)),
            ["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""]
        );
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let old = class("p", 10);
        let mut new = class("p", 11);
        new["preemptionPolicy"] = json!("Never");
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable"
            ]
        );
        let mut described = class("p", 10);
        described["description"] = json!("now documented");
        assert!(RESOURCE
            .strategy
            .validate_update(&described, &old)
            .is_empty());
    }

    #[test]
    fn table_row() {
        let mut pc = class("high", 1000);
        pc["globalDefault"] = json!(true);
        let row = RESOURCE.strategy.row(&pc);
        assert_eq!(row[0], "high");
        assert_eq!(row[1], 1000);
        assert_eq!(row[2], true);
        assert_eq!(row[4], "PreemptLowerPriority");
        let names: Vec<&str> = RESOURCE.strategy.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
    }
}
