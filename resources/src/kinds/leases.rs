//! coordination.k8s.io/v1 Lease.
//!
//! Leader election and node heartbeats. Durations must be positive, transitions
//! non-negative; a preferred holder needs a strategy. A PUT may create a lease.

use crate::podspec::str_at;
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &Leases,
    typed: Some(Typed::of::<k8s_openapi::api::coordination::v1::Lease>()),
    merge: Some(Root::MetadataOnly),
};

struct Leases;

/// `coordination.OldestEmulationVersion`, the only Kubernetes-defined strategy.
const STRATEGIES: &[&str] = &["OldestEmulationVersion"];

impl Strategy for Leases {
    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let Some(spec) = obj.get("spec") else {
            return out;
        };
        if let Some(d) = spec.get("leaseDurationSeconds").filter(|v| !v.is_null()) {
            if d.as_i64().unwrap_or(0) <= 0 {
                out.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = spec.get("leaseTransitions").filter(|v| !v.is_null()) {
            if t.as_i64().unwrap_or(-1) < 0 {
                out.push(Cause::invalid(
                    "spec.leaseTransitions",
                    t,
                    "must be greater than or equal to 0",
                ));
            }
        }
        let strategy = spec.get("strategy").and_then(Value::as_str);
        if let Some(s) = strategy {
            // Kubernetes nests the field name once more in this path.
            let path = "spec.strategy.strategy";
            if !s.contains('/') {
                if !STRATEGIES.contains(&s) {
                    out.push(Cause::not_supported(path, &json!(s), STRATEGIES));
                }
            } else {
                for msg in validation::qualified_name(s) {
                    out.push(Cause::invalid(path, &json!(s), msg));
                }
            }
        }
        let preferred = str_at(spec, "preferredHolder");
        if !preferred.is_empty() && strategy.unwrap_or("").is_empty() {
            out.push(Cause::forbidden(
                "spec.preferredHolder",
                "may only be specified if `strategy` is defined",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let holder = obj.get("spec").map_or("", |s| str_at(s, "holderIdentity"));
        name_age_row(obj, vec![json!(holder)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_spec_numbers() {
        let lease = json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "x"}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&lease)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
                "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ]
        );
        let ok = json!({"spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "leaseTransitions": 0}});
        assert!(RESOURCE.strategy.validate(&ok).is_empty());
        assert!(RESOURCE.strategy.allow_create_on_update());
    }

    #[test]
    fn table_shows_holder() {
        let lease =
            json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp-1_abc"}});
        assert_eq!(RESOURCE.strategy.row(&lease)[1], "cp-1_abc");
        assert_eq!(RESOURCE.strategy.row(&json!({}))[1], "");
    }
}
