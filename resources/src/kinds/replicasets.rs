//! apps/v1 ReplicaSet.

use crate::podspec::{
    self, container_cells, default_field, ensure_object, format_label_selector, nonnegative,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    strategy: &ReplicaSets,
    typed: Some(Typed::of::<k8s_openapi::api::apps::v1::ReplicaSet>()),
    merge: Some(Root::ReplicaSet),
};

struct ReplicaSets;

impl Strategy for ReplicaSets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"replicas": 0}));
        }
    }

    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(Value::Null));
        default_field(spec, "replicas", json!(1));
        podspec::default_pod_template(spec.entry("template").or_insert(Value::Null));
    }

    /// `ValidateReplicaSetSpec` (whose empty-selector message does say "deployment").
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();
        nonnegative(spec, "replicas", "spec", &mut causes);
        nonnegative(spec, "minReadySeconds", "spec", &mut causes);
        if podspec::validate_apps_selector(spec, "spec", "deployment", &mut causes) {
            let template = spec.get("template").unwrap_or(&null);
            causes.extend(podspec::validate_pod_template(
                template,
                "spec.template",
                &Default::default(),
            ));
            causes.extend(podspec::replicated_restart_rules(
                template,
                "spec.template",
                "ReplicaSet",
            ));
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        podspec::selector_immutable(new, old, &mut causes);
        causes
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let replicas = obj
            .get("status")
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        vec![("status.replicas", replicas.to_string())]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
            Column::new("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
            Column::new("Ready", "integer", "The number of ready replicas for this replica set."),
        ]);
        cols.extend(podspec::wide_columns("Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let int = |v: &Value, k: &str| json!(v.get(k).and_then(Value::as_i64).unwrap_or(0));
        let mut row = name_age_row(
            obj,
            vec![
                int(spec, "replicas"),
                int(status, "replicas"),
                int(status, "readyReplicas"),
            ],
        );
        let (names, images) = container_cells(spec.get("template").and_then(|t| t.get("spec")));
        row.extend([
            names,
            images,
            json!(format_label_selector(spec.get("selector"))),
        ]);
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> Value {
        json!({"metadata": {"name": "web-abc", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
    }

    #[test]
    fn defaults_validation_table() {
        let mut r = rs();
        RESOURCE.strategy.prepare_for_create(&mut r);
        RESOURCE.strategy.default(&mut r);
        assert_eq!(r["spec"]["replicas"], 1);
        assert_eq!(r["status"], json!({"replicas": 0}));
        assert_eq!(
            r["spec"]["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
        assert!(RESOURCE.strategy.validate(&r).is_empty());
        let row = RESOURCE.strategy.row(&r);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(&row[1..4], &[json!(1), json!(0), json!(0)]);
        assert_eq!(row[7], "app=web");
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&r),
            vec![("status.replicas", "0".to_string())]
        );
    }

    #[test]
    fn rejects_empty_selector_and_negative_replicas() {
        let mut r = rs();
        r["spec"]["selector"] = json!({});
        r["spec"]["replicas"] = json!(-2);
        RESOURCE.strategy.default(&mut r);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&r)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown[0],
            "spec.replicas: Invalid value: -2: must be greater than or equal to 0"
        );
        assert_eq!(
            shown[1],
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        );
        assert_eq!(shown.len(), 2);
    }
}
