//! apps/v1 ControllerRevision.

use crate::podspec::{nonnegative, required_detail, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "ControllerRevision",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &ControllerRevisions,
    typed: Some(Typed::of::<k8s_openapi::api::apps::v1::ControllerRevision>()),
    merge: Some(Root::MetadataOnly),
};

struct ControllerRevisions;

impl Strategy for ControllerRevisions {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if obj.get("data").is_none_or(Value::is_null) {
            causes.push(required_detail("data", "data is mandatory"));
        }
        nonnegative(obj, "revision", "", &mut causes);
        for c in &mut causes {
            if let Some(f) = c.field.strip_prefix('.') {
                c.field = f.to_string();
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        if new.get("data") != old.get("data") {
            return vec![Cause::immutable(
                "data",
                new.get("data").unwrap_or(&Value::Null),
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new("Controller", "string", "Controller of the object"),
            Column::new(
                "Revision",
                "string",
                "Revision indicates the revision of the state represented by Data.",
            ),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let controller = obj
            .get("metadata")
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            })
            .map(|r| {
                let group = str_at(r, "apiVersion")
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                let kind = if group.is_empty() {
                    str_at(r, "kind").to_string()
                } else {
                    format!("{}.{group}", str_at(r, "kind"))
                };
                format!("{}/{}", kind.to_lowercase(), str_at(r, "name"))
            })
            .unwrap_or_else(|| "<none>".to_string());
        let revision = obj.get("revision").and_then(Value::as_i64).unwrap_or(0);
        name_age_row(obj, vec![json!(controller), json!(revision)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_row() {
        let cr = json!({"metadata": {"name": "web-5d4f", "creationTimestamp": "2020-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "data": {"spec": {}}, "revision": 2});
        assert!(RESOURCE.strategy.validate(&cr).is_empty());
        let row = RESOURCE.strategy.row(&cr);
        assert_eq!(
            &row[..3],
            &[json!("web-5d4f"), json!("statefulset.apps/web"), json!(2)]
        );

        let bad = json!({"metadata": {"name": "x"}, "revision": -1});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&bad)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "data: Required value: data is mandatory".to_string(),
                "revision: Invalid value: -1: must be greater than or equal to 0".to_string()
            ]
        );
        let mut changed = cr.clone();
        changed["data"] = json!({"spec": {"x": 1}});
        assert_eq!(
            RESOURCE.strategy.validate_update(&changed, &cr)[0].field,
            "data"
        );
        assert!(!RESOURCE.strategy.tracks_generation());
    }
}
