//! apps/v1 DaemonSet.

use crate::podspec::{
    self, container_cells, default_field, ensure_object, format_label_selector, format_labels,
    go_int_or_string, go_label_selector, int_or_percent, invalid_shown, nonnegative,
    not_more_than_100_percent, required_detail, selector_is_empty, selector_is_valid,
    selector_matches, selector_mismatch, str_at, template_labels,
};
use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    strategy: &DaemonSets,
    typed: Some(Typed::of::<k8s_openapi::api::apps::v1::DaemonSet>()),
    merge: Some(Root::DaemonSet),
};

struct DaemonSets;

impl Strategy for DaemonSets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                       "desiredNumberScheduled": 0, "numberReady": 0}),
            );
        }
    }

    /// `SetDefaults_DaemonSet`.
    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(Value::Null));
        let us = ensure_object(spec.entry("updateStrategy").or_insert(Value::Null));
        if us
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            us.insert("type".into(), json!("RollingUpdate"));
        }
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = ensure_object(us.entry("rollingUpdate").or_insert(Value::Null));
            default_field(ru, "maxUnavailable", json!(1));
            default_field(ru, "maxSurge", json!(0));
        }
        default_field(spec, "revisionHistoryLimit", json!(10));
        podspec::default_pod_template(spec.entry("template").or_insert(Value::Null));
    }

    /// `ValidateDaemonSetSpec`.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let template = spec.get("template").unwrap_or(&null);
        let selector = spec.get("selector").filter(|s| !s.is_null());
        let mut causes = Vec::new();
        podspec::validate_label_selector(selector, "spec.selector", &mut causes);
        if selector_is_valid(selector)
            && !(selector.is_some_and(selector_is_empty))
            && !selector_matches(selector, template_labels(template))
        {
            causes.push(selector_mismatch(template, "spec.template"));
        }
        if let Some(s) = selector.filter(|s| selector_is_empty(s)) {
            causes.push(invalid_shown(
                "spec.selector",
                &go_label_selector(Some(s)),
                "empty selector is invalid for daemonset",
            ));
        }
        causes.extend(podspec::validate_pod_template(
            template,
            "spec.template",
            &Default::default(),
        ));
        causes.extend(podspec::replicated_restart_rules(
            template,
            "spec.template",
            "DaemonSet",
        ));
        nonnegative(spec, "minReadySeconds", "spec", &mut causes);
        validate_update_strategy(spec.get("updateStrategy").unwrap_or(&null), &mut causes);
        nonnegative(spec, "revisionHistoryLimit", "spec", &mut causes);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        podspec::selector_immutable(new, old, &mut causes);
        causes
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = vec![
            Column::name(),
            Column::new("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            Column::new("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            Column::new("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            Column::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
            Column::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            Column::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
            Column::age(),
        ];
        cols.extend(podspec::wide_columns("A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let pod_spec = spec.get("template").and_then(|t| t.get("spec"));
        let int = |k: &str| json!(status.get(k).and_then(Value::as_i64).unwrap_or(0));
        let (names, images) = container_cells(pod_spec);
        vec![
            name_cell(obj),
            int("desiredNumberScheduled"),
            int("currentNumberScheduled"),
            int("numberReady"),
            int("updatedNumberScheduled"),
            int("numberAvailable"),
            json!(format_labels(pod_spec.and_then(|s| s.get("nodeSelector")))),
            age_cell(obj),
            names,
            images,
            json!(format_label_selector(spec.get("selector"))),
        ]
    }
}

/// `ValidateDaemonSetUpdateStrategy`.
fn validate_update_strategy(us: &Value, causes: &mut Vec<Cause>) {
    match str_at(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = us.get("rollingUpdate").filter(|r| !r.is_null()) else {
                causes.push(Cause::required("spec.updateStrategy.rollingUpdate"));
                return;
            };
            let p = "spec.updateStrategy.rollingUpdate";
            let mu = ru.get("maxUnavailable");
            let ms = ru.get("maxSurge");
            let (unavailable, _) = int_or_percent(mu, &format!("{p}.maxUnavailable"), causes);
            let (surge, _) = int_or_percent(ms, &format!("{p}.maxSurge"), causes);
            not_more_than_100_percent(mu, &format!("{p}.maxUnavailable"), causes);
            not_more_than_100_percent(ms, &format!("{p}.maxSurge"), causes);
            match (unavailable != 0, surge != 0) {
                (true, true) => causes.push(invalid_shown(
                    format!("{p}.maxSurge"),
                    &go_int_or_string(ms),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => causes.push(required_detail(
                    format!("{p}.maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        other => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.updateStrategy",
            format!(
                "Unsupported value: apps.DaemonSetUpdateStrategy{{Type:{other:?}}}: supported values: \"RollingUpdate\", \"OnDelete\""
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> Value {
        json!({"metadata": {"name": "agent", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                              "containers": [{"name": "agent", "image": "agent:1"}]}}}})
    }

    #[test]
    fn defaults_and_table() {
        let mut d = ds();
        RESOURCE.strategy.prepare_for_create(&mut d);
        RESOURCE.strategy.default(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["status"]["desiredNumberScheduled"], 0);
        assert!(
            RESOURCE.strategy.validate(&d).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&d)
        );
        let row = RESOURCE.strategy.row(&d);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(row[6], "kubernetes.io/os=linux");
        assert_eq!(
            &row[8..],
            &[json!("agent"), json!("agent:1"), json!("app=agent")]
        );
    }

    #[test]
    fn validation() {
        let mut d = ds();
        d["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}});
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        RESOURCE.strategy.default(&mut d);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&d)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`".to_string(),
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero".to_string(),
            ]
        );
        let mut old = ds();
        RESOURCE.strategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &old)[0].field,
            "spec.selector"
        );
    }
}
