//! policy/v1 PodDisruptionBudget.
//!
//! How many of the pods a selector picks must stay up through voluntary disruptions
//! (evictions: `kubectl drain`). Created with an empty status (the disruption
//! controller fills it, and `pods/eviction` spends it); the spec may change, which bumps
//! the generation so that evictions wait for the controller to catch up.

use crate::podspec::{
    int_or_percent, invalid_shown, nonnegative, not_more_than_100_percent, validate_label_selector,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &PodDisruptionBudgets,
    typed: Some(Typed::of::<k8s_openapi::api::policy::v1::PodDisruptionBudget>()),
    merge: Some(Root::PodDisruptionBudget),
};

struct PodDisruptionBudgets;

/// `spec.unhealthyPodEvictionPolicy` values.
const UNHEALTHY_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

impl Strategy for PodDisruptionBudgets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
            );
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            out.push(invalid_shown(
                "spec",
                &spec.to_string(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (v, path) in [(min, "spec.minAvailable"), (max, "spec.maxUnavailable")] {
            if v.is_some() {
                int_or_percent(v, path, &mut out);
                not_more_than_100_percent(v, path, &mut out);
            }
        }
        validate_label_selector(spec.get("selector"), "spec.selector", &mut out);
        if let Some(p) = spec
            .get("unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
        {
            if !UNHEALTHY_POLICIES.contains(&p) {
                out.push(Cause::not_supported(
                    "spec.unhealthyPodEvictionPolicy",
                    &json!(p),
                    UNHEALTHY_POLICIES,
                ));
            }
        }
        if let Some(status) = obj.get("status").filter(|s| s.is_object()) {
            for key in [
                "disruptionsAllowed",
                "currentHealthy",
                "desiredHealthy",
                "expectedPods",
            ] {
                nonnegative(status, key, "status", &mut out);
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new("Min Available", "string", "An eviction is allowed if at least \"minAvailable\" pods selected by \"selector\" will still be available after the eviction, i.e. even in the absence of the evicted pod.  So for example you can prevent all voluntary evictions by specifying \"100%\"."),
            Column::new("Max Unavailable", "string", "An eviction is allowed if at most \"maxUnavailable\" pods selected by \"selector\" are unavailable after the eviction, i.e. even in absence of the evicted pod. For example, one can prevent all voluntary evictions by specifying 0. This is a mutually exclusive setting with \"minAvailable\"."),
            Column::new("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let shown = |key: &str| match obj.pointer(&format!("/spec/{key}")) {
            Some(Value::String(s)) => json!(s),
            Some(Value::Number(n)) => json!(n.to_string()),
            _ => json!("N/A"),
        };
        let allowed = obj
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        name_age_row(
            obj,
            vec![
                shown("minAvailable"),
                shown("maxUnavailable"),
                json!(allowed),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(obj: Value) -> Vec<String> {
        RESOURCE
            .strategy
            .validate(&obj)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn budgets_are_one_of_two_numbers_or_percentages() {
        assert!(causes(
            json!({"spec": {"minAvailable": 2, "selector": {"matchLabels": {"a": "b"}}}})
        )
        .is_empty());
        assert!(causes(json!({"spec": {"maxUnavailable": "25%"}})).is_empty());
        let both = causes(json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}}));
        assert_eq!(both.len(), 1);
        assert!(both[0].contains("minAvailable and maxUnavailable cannot be both set"));
        let bad = causes(json!({"spec": {"minAvailable": -1, "maxUnavailable": "150%"}}));
        assert!(bad
            .iter()
            .any(|c| c.starts_with("spec.minAvailable: ")
                && c.contains("greater than or equal to 0")));
        assert!(bad
            .iter()
            .any(|c| c.starts_with("spec.maxUnavailable: ") && c.contains("100%")));
        let policy = causes(json!({"spec": {"unhealthyPodEvictionPolicy": "Sometimes"}}));
        assert!(policy[0].starts_with("spec.unhealthyPodEvictionPolicy: Unsupported value"));
        let status = causes(json!({"spec": {}, "status": {"disruptionsAllowed": -1}}));
        assert_eq!(status.len(), 1);
    }

    #[test]
    fn table_shows_na_for_the_unset_bound() {
        let row = RESOURCE.strategy.row(&json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1},
        }));
        assert_eq!(row[1], json!("2"));
        assert_eq!(row[2], json!("N/A"));
        assert_eq!(row[3], json!(1));
    }
}
