//! node.k8s.io/v1 RuntimeClass.
//!
//! A named container runtime configuration: `handler` is the CRI runtime handler the
//! node agent asks for when a pod names the class in `runtimeClassName`; `overhead` is
//! what a pod of the class costs beyond its containers, and `scheduling` where such pods
//! may run. Validation follows Kubernetes' `ValidateRuntimeClass`: the handler is a DNS
//! label and never changes.

use crate::podspec::{
    items, parse_quantity, quantity_text, str_at, validate_labels, validate_resource_name,
    validate_tolerations, QUANTITY_REGEX_MSG,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "node.k8s.io",
    version: "v1",
    kind: "RuntimeClass",
    plural: "runtimeclasses",
    singular: "runtimeclass",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &RuntimeClasses,
    typed: Some(Typed::of::<k8s_openapi::api::node::v1::RuntimeClass>()),
    // scheduling.tolerations is an atomic list.
    merge: Some(Root::MetadataOnly),
};

struct RuntimeClasses;

impl Strategy for RuntimeClasses {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let handler = str_at(obj, "handler");
        for msg in validation::dns1123_label(handler) {
            out.push(Cause::invalid("handler", &json!(handler), msg));
        }
        if let Some(fixed) = obj.pointer("/overhead/podFixed").and_then(Value::as_object) {
            for (name, q) in fixed {
                let path = format!("overhead.podFixed[{name}]");
                validate_resource_name(name, &path, &mut out);
                match parse_quantity(q) {
                    None => out.push(Cause::invalid(
                        &path,
                        &json!(quantity_text(q)),
                        QUANTITY_REGEX_MSG,
                    )),
                    Some(v) if v < 0 => out.push(Cause::invalid(
                        &path,
                        &json!(quantity_text(q)),
                        "must be greater than or equal to 0",
                    )),
                    Some(_) => {}
                }
            }
        }
        if let Some(scheduling) = obj.get("scheduling").filter(|s| !s.is_null()) {
            validate_labels(
                scheduling.get("nodeSelector"),
                "scheduling.nodeSelector",
                &mut out,
            );
            validate_tolerations(
                items(scheduling, "tolerations"),
                "scheduling.tolerations",
                &mut out,
            );
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let handler = str_at(new, "handler");
        if handler != str_at(old, "handler") {
            return vec![Cause::immutable("handler", &json!(handler))];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Handler",
            "string",
            "Handler is the name of the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        name_age_row(obj, vec![json!(str_at(obj, "handler"))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    #[test]
    fn handler_is_a_dns_label() {
        let ok = json!({"metadata": {"name": "gvisor"}, "handler": "runsc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {"nodeSelector": {"runtime": "gvisor"}, "tolerations": [{"key": "sandboxed", "operator": "Exists"}]}});
        assert!(RESOURCE.strategy.validate(&ok).is_empty());
        let bad = json!({"handler": "Run_SC", "overhead": {"podFixed": {"cpu": "-1"}}});
        let causes = shown(RESOURCE.strategy.validate(&bad));
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert!(
            causes[0].starts_with("handler: Invalid value: \"Run_SC\": a lowercase RFC 1123 label")
        );
        assert_eq!(
            causes[1],
            "overhead.podFixed[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"
        );
        assert!(!RESOURCE
            .strategy
            .validate(&json!({"handler": ""}))
            .is_empty());
    }

    #[test]
    fn handler_is_immutable() {
        let old = json!({"handler": "runc"});
        assert_eq!(
            shown(
                RESOURCE
                    .strategy
                    .validate_update(&json!({"handler": "runsc"}), &old)
            ),
            ["handler: Invalid value: \"runsc\": field is immutable"]
        );
        assert_eq!(
            RESOURCE
                .strategy
                .row(&json!({"metadata": {"name": "r"}, "handler": "runc"}))[1],
            json!("runc")
        );
    }
}
