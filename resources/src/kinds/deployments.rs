//! apps/v1 Deployment.

use crate::podspec::{
    self, container_cells, default_field, ensure_object, go_int_or_string, int_or_percent,
    invalid_shown, nonnegative, not_more_than_100_percent, required_detail, selector_string,
    str_at,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    strategy: &Deployments,
    typed: Some(Typed::of::<k8s_openapi::api::apps::v1::Deployment>()),
    merge: Some(Root::Deployment),
};

struct Deployments;

impl Strategy for Deployments {
    // Kubernetes' deployment status strategy: a status write never relabels.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        crate::strategy::keep_metadata_field(new, old, "labels");
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    /// `SetDefaults_Deployment`.
    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        let spec = ensure_object(o.entry("spec").or_insert(Value::Null));
        default_field(spec, "replicas", json!(1));
        let strategy = ensure_object(spec.entry("strategy").or_insert(Value::Null));
        if strategy
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = ensure_object(strategy.entry("rollingUpdate").or_insert(Value::Null));
            default_field(ru, "maxUnavailable", json!("25%"));
            default_field(ru, "maxSurge", json!("25%"));
        }
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
        podspec::default_pod_template(spec.entry("template").or_insert(Value::Null));
    }

    /// `ValidateDeploymentSpec`.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();
        nonnegative(spec, "replicas", "spec", &mut causes);
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
        validate_strategy(spec.get("strategy").unwrap_or(&null), &mut causes);
        nonnegative(spec, "minReadySeconds", "spec", &mut causes);
        nonnegative(spec, "revisionHistoryLimit", "spec", &mut causes);
        if let Some(pds) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
            nonnegative(spec, "progressDeadlineSeconds", "spec", &mut causes);
            let min_ready = spec
                .get("minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if pds <= min_ready {
                causes.push(Cause::invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(pds),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        podspec::selector_immutable(new, old, &mut causes);
        causes
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new("Ready", "string", "Number of the pod with ready state"),
            Column::new(
                "Up-to-date",
                "string",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            Column::new(
                "Available",
                "string",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
        ]);
        cols.extend(podspec::wide_columns(
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        ));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let mut row = name_age_row(
            obj,
            vec![
                json!(format!(
                    "{}/{}",
                    int(status, "readyReplicas"),
                    int(spec, "replicas")
                )),
                json!(int(status, "updatedReplicas")),
                json!(int(status, "availableReplicas")),
            ],
        );
        let (names, images) = container_cells(spec.get("template").and_then(|t| t.get("spec")));
        let selector = if podspec::selector_is_valid(spec.get("selector")) {
            selector_string(spec.get("selector"))
        } else {
            "<invalid>".to_string()
        };
        row.extend([names, images, json!(selector)]);
        row
    }
}

/// `ValidateDeploymentStrategy`.
fn validate_strategy(strategy: &Value, causes: &mut Vec<Cause>) {
    let ru = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match str_at(strategy, "type") {
        "Recreate" => {
            if ru.is_some() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => causes.push(required_detail(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = "spec.strategy.rollingUpdate";
                let (unavailable, _) = int_or_percent(
                    ru.get("maxUnavailable"),
                    &format!("{p}.maxUnavailable"),
                    causes,
                );
                let (surge, _) =
                    int_or_percent(ru.get("maxSurge"), &format!("{p}.maxSurge"), causes);
                if unavailable == 0 && surge == 0 {
                    causes.push(invalid_shown(
                        format!("{p}.maxUnavailable"),
                        &go_int_or_string(ru.get("maxUnavailable")),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(
                    ru.get("maxUnavailable"),
                    &format!("{p}.maxUnavailable"),
                    causes,
                );
            }
        },
        other => {
            let shown = format!(
                "apps.DeploymentStrategy{{Type:{other:?}, RollingUpdate:(*apps.RollingUpdateDeployment)({})}}",
                if ru.is_some() { "..." } else { "nil" }
            );
            causes.push(Cause::new(
                "FieldValueNotSupported",
                "spec.strategy",
                format!(
                    "Unsupported value: {shown}: supported values: \"Recreate\", \"RollingUpdate\""
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn defaults() {
        let mut d = deployment();
        RESOURCE.strategy.prepare_for_create(&mut d);
        RESOURCE.strategy.default(&mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(s["template"]["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(
            s["template"]["spec"]["containers"][0]["terminationMessagePolicy"],
            "File"
        );
        assert_eq!(d["status"], json!({}));
        assert!(RESOURCE.strategy.tracks_generation());
        assert!(
            RESOURCE.strategy.validate(&d).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&d)
        );

        let mut recreate = deployment();
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        RESOURCE.strategy.default(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn validation() {
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
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
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".to_string(),
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0".to_string(),
            ]
        );

        let mut no_selector = deployment();
        no_selector["spec"]
            .as_object_mut()
            .unwrap()
            .remove("selector");
        RESOURCE.strategy.default(&mut no_selector);
        let fields: Vec<String> = RESOURCE
            .strategy
            .validate(&no_selector)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.selector", "spec.template.metadata.labels"]
        );
    }

    #[test]
    fn selector_is_immutable() {
        let mut old = deployment();
        RESOURCE.strategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
        let causes = RESOURCE.strategy.validate_update(&new, &old);
        assert_eq!(
            causes[0].display(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        new["spec"]["selector"] = old["spec"]["selector"].clone();
        new["spec"]["replicas"] = json!(5);
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn table_row() {
        let mut d = deployment();
        RESOURCE.strategy.default(&mut d);
        d["spec"]["replicas"] = json!(3);
        d["status"] = json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let row = RESOURCE.strategy.row(&d);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(&row[1..4], &[json!("2/3"), json!(3), json!(2)]);
        assert_eq!(
            &row[5..],
            &[json!("nginx"), json!("nginx:1.27"), json!("app=web")]
        );
    }
}
