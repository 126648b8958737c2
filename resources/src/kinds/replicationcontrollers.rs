//! core/v1 ReplicationController.

use crate::podspec::{
    self, container_cells, format_labels, go_string_map, invalid_shown, nonnegative, string_pairs,
    template_labels,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "ReplicationController",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    strategy: &ReplicationControllers,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::ReplicationController>()),
    merge: Some(Root::ReplicationController),
};

struct ReplicationControllers;

impl Strategy for ReplicationControllers {
    /// core/v1 ReplicationControllers orphan their pods by default, for backwards
    /// compatibility.
    fn default_garbage_collection_policy(&self) -> crate::strategy::GcPolicy {
        crate::strategy::GcPolicy::Orphan
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"replicas": 0}));
        }
    }

    /// `SetDefaults_ReplicationController`: the selector and the controller's labels
    /// default to the template's labels; one replica.
    fn default(&self, obj: &mut Value) {
        let o = podspec::ensure_object(obj);
        let spec = podspec::ensure_object(o.entry("spec").or_insert(Value::Null));
        if let Some(t) = spec.get_mut("template").filter(|t| !t.is_null()) {
            podspec::default_pod_template(t);
        }
        let labels = spec.get("template").and_then(template_labels).cloned();
        if let Some(labels) = labels {
            if spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(|s| s.is_empty())
            {
                spec.insert("selector".into(), labels.clone());
            }
            let md = podspec::ensure_object(o.entry("metadata").or_insert(Value::Null));
            if md
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(|l| l.is_empty())
            {
                md.insert("labels".into(), labels);
            }
        }
        let spec = podspec::ensure_object(o.get_mut("spec").expect("spec"));
        podspec::default_field(spec, "replicas", json!(1));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();
        nonnegative(spec, "minReadySeconds", "spec", &mut causes);
        let selector = string_pairs(spec.get("selector"));
        if selector.is_empty() {
            causes.push(Cause::required("spec.selector"));
        }
        nonnegative(spec, "replicas", "spec", &mut causes);
        match spec.get("template").filter(|t| !t.is_null()) {
            None => causes.push(Cause::required("spec.template")),
            Some(t) => {
                let labels = template_labels(t);
                let matches = selector.iter().all(|(k, v)| {
                    labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v.as_str())
                });
                if !selector.is_empty() && !matches {
                    causes.push(invalid_shown(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                causes.extend(podspec::validate_replicated_template(
                    Some(t),
                    "spec.template",
                    "ReplicationController",
                ));
            }
        }
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
            Column::new("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
            Column::new("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
            Column::new("Ready", "integer", "The number of ready replicas for this replication controller."),
        ]);
        cols.extend(podspec::wide_columns("Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"));
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
        row.extend([names, images, json!(format_labels(spec.get("selector")))]);
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc() -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn defaults_from_template_labels() {
        let mut r = rc();
        RESOURCE.strategy.prepare_for_create(&mut r);
        RESOURCE.strategy.default(&mut r);
        assert_eq!(r["spec"]["replicas"], 1);
        assert_eq!(r["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(r["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(r["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(r["status"], json!({"replicas": 0}));
        assert!(
            RESOURCE.strategy.validate(&r).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&r)
        );
        let row = RESOURCE.strategy.row(&r);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(&row[1..4], &[json!(1), json!(0), json!(0)]);
        assert_eq!(&row[5..], &[json!("web"), json!("nginx"), json!("app=web")]);
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&r),
            vec![("status.replicas", "0".to_string())]
        );
    }

    #[test]
    fn rejects_mismatched_selector_and_restart_policy() {
        let mut r = rc();
        r["spec"]["selector"] = json!({"app": "other"});
        r["spec"]["replicas"] = json!(-1);
        r["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        RESOURCE.strategy.default(&mut r);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&r)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string(),
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".to_string(),
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string(),
            ]
        );
    }
}
