//! core/v1 PodTemplate.

use crate::podspec::{self, container_cells, format_labels, template_labels, SpecOptions};
use crate::strategy::Strategy;
use crate::table::{name_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::Cause;
use serde_json::Value;

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "PodTemplate",
    plural: "podtemplates",
    singular: "podtemplate",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &PodTemplates,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::PodTemplate>()),
    merge: Some(Root::PodTemplate),
};

struct PodTemplates;

impl Strategy for PodTemplates {
    /// Kubernetes sets `generation: 1` on create and bumps it when the template changes.
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            podspec::default_pod_template(o.entry("template").or_insert(Value::Null));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        podspec::validate_pod_template(
            obj.get("template").unwrap_or(&Value::Null),
            "template",
            &SpecOptions::default(),
        )
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Containers",
                "string",
                "Names of each container in the template.",
            ),
            Column::new(
                "Images",
                "string",
                "Images referenced by each container in the template.",
            ),
            Column::new("Pod Labels", "string", "The labels for the pod template."),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let template = obj.get("template").unwrap_or(&Value::Null);
        let (names, images) = container_cells(template.get("spec"));
        vec![
            name_cell(obj),
            names,
            images,
            Value::String(format_labels(template_labels(template))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox:1.36"}]}}})
    }

    #[test]
    fn defaults_validation_and_row() {
        let mut t = template();
        RESOURCE.strategy.default(&mut t);
        assert_eq!(t["template"]["metadata"]["creationTimestamp"], Value::Null);
        assert!(t["template"]["metadata"]
            .as_object()
            .unwrap()
            .contains_key("creationTimestamp"));
        assert_eq!(t["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            t["template"]["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(t["template"]["spec"].get("serviceAccountName").is_none());
        assert!(RESOURCE.strategy.validate(&t).is_empty());
        assert_eq!(
            RESOURCE.strategy.row(&t),
            vec![
                json!("t"),
                json!("a,b"),
                json!("nginx,busybox:1.36"),
                json!("app=web,tier=fe")
            ]
        );

        t["template"]["spec"]["containers"] = json!([]);
        t["template"]["metadata"]["labels"] = json!({"bad key": "x"});
        let fields: Vec<String> = RESOURCE
            .strategy
            .validate(&t)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["template.labels", "template.spec.containers"]);
    }
}
