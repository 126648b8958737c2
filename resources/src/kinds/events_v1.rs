//! events.k8s.io/v1 Event.
//!
//! Another view of the core/v1 events, as on Kubernetes: the same objects under the
//! same etcd keys, with renamed fields ([`to_core`] and [`from_core`] convert), so an
//! Event written through either API is read, watched and deleted through both.
//! Creates get Kubernetes' strict validation for this API (eventTime, reporting
//! fields, deprecated fields unset), updates the legacy rules plus immutable fields,
//! with Kubernetes' internal field names in the paths (`involvedObject`, `message`,
//! `reportingController`), as its messages have them.

use crate::kinds::events::{
    core_selectable_fields, event_columns, event_row, legacy_validate, time_set,
};
use crate::podspec::str_at;
use crate::strategy::{SharedStorage, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Map, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    strategy: &EventsV1,
    typed: Some(Typed::of::<k8s_openapi::api::events::v1::Event>()),
    merge: Some(Root::MetadataOnly),
};

struct EventsV1;

/// Kubernetes stores both Event APIs as core/v1 Events under `/registry/events`.
static STORED_AS_CORE: SharedStorage = SharedStorage {
    resource: &crate::kinds::events::RESOURCE,
    to_stored: to_core,
    from_stored: from_core,
};

/// events.k8s.io field name and core/v1 field name.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let renamed = RENAMES
                .iter()
                .find(|(v1, core)| if to_core { v1 == k } else { core == k })
                .map(|(v1, core)| if to_core { *core } else { *v1 });
            out.insert(renamed.unwrap_or(k).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 event as the core/v1 event Kubernetes stores.
pub fn to_core(ev: &Value) -> Value {
    rename(ev, "v1", true)
}

/// A core/v1 event as events.k8s.io/v1 shows it.
pub fn from_core(ev: &Value) -> Value {
    rename(ev, "events.k8s.io/v1", false)
}

impl Strategy for EventsV1 {
    fn expires(&self) -> bool {
        true
    }

    fn default_garbage_collection_policy(&self) -> crate::strategy::GcPolicy {
        crate::strategy::GcPolicy::Unsupported
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn shared_storage(&self) -> Option<&'static SharedStorage> {
        Some(&STORED_AS_CORE)
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        legacy_validate(&to_core(obj))
    }

    /// Kubernetes' strict rules for Events created through this API.
    fn validate_create(&self, obj: &Value) -> Vec<Cause> {
        let core = to_core(obj);
        let mut out = Vec::new();
        if let Some(series) = core.get("series").filter(|s| !s.is_null()) {
            if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
                out.push(Cause::invalid(
                    "series.count",
                    &json!(""),
                    "should be at least 2",
                ));
            }
            if !time_set(series, "lastObservedTime") {
                out.push(Cause::required("series.lastObservedTime"));
            }
        }
        if !time_set(&core, "eventTime") {
            out.push(Cause::required("eventTime"));
        }
        let t = str_at(&core, "type");
        if t != "Normal" && t != "Warning" {
            out.push(Cause::invalid(
                "type",
                &json!(""),
                format!("has invalid value: {t}"),
            ));
        }
        for field in ["firstTimestamp", "lastTimestamp"] {
            if time_set(&core, field) {
                out.push(Cause::invalid(field, &json!(""), "needs to be unset"));
            }
        }
        if core.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
            out.push(Cause::invalid("count", &json!(""), "needs to be unset"));
        }
        let source = core.get("source").cloned().unwrap_or(Value::Null);
        if !str_at(&source, "component").is_empty() || !str_at(&source, "host").is_empty() {
            out.push(Cause::invalid("source", &json!(""), "needs to be unset"));
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let (new, old) = (to_core(new), to_core(old));
        let mut out = Vec::new();
        for field in [
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ] {
            let get = |o: &Value| o.get(field).filter(|v| !v.is_null()).cloned();
            let (n, o) = (get(&new), get(&old));
            if n != o {
                let path = if field == "reportingComponent" {
                    "reportingController"
                } else {
                    field
                };
                out.push(Cause::immutable(path, &n.unwrap_or(Value::Null)));
            }
        }
        out
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        core_selectable_fields(&to_core(obj))
            .into_iter()
            .filter_map(|(k, v)| {
                let name = match k {
                    "involvedObject.kind" => "regarding.kind",
                    "involvedObject.namespace" => "regarding.namespace",
                    "involvedObject.name" => "regarding.name",
                    "involvedObject.uid" => "regarding.uid",
                    "involvedObject.apiVersion" => "regarding.apiVersion",
                    "involvedObject.resourceVersion" => "regarding.resourceVersion",
                    "involvedObject.fieldPath" => "regarding.fieldPath",
                    "reportingComponent" => "reportingController",
                    "reason" | "type" => k,
                    _ => return None,
                };
                Some((name, v))
            })
            .collect()
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ]
    }

    fn columns(&self) -> Vec<Column> {
        event_columns()
    }

    fn row(&self, obj: &Value) -> TableRow {
        event_row(&to_core(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Deployment", "namespace": "default", "name": "web"},
            "reason": "ScalingReplicaSet", "action": "Scale", "type": "Normal",
            "note": "Scaled up", "reportingController": "deployment-controller",
            "reportingInstance": "deployment-controller-cp-1"
        })
    }

    #[test]
    fn converts_both_ways() {
        let core = to_core(&event());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "Scaled up");
        assert_eq!(core["reportingComponent"], "deployment-controller");
        assert_eq!(from_core(&core), event());
    }

    #[test]
    fn strict_validation() {
        assert!(RESOURCE.strategy.validate(&event()).is_empty());
        assert!(RESOURCE.strategy.validate_create(&event()).is_empty());
        let mut e = event();
        e["type"] = json!("Info");
        e["deprecatedCount"] = json!(2);
        e.as_object_mut().unwrap().remove("eventTime");
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate_create(&e)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Info",
                "count: Invalid value: \"\": needs to be unset",
            ]
        );
        let mut changed = event();
        changed["note"] = json!("other");
        assert_eq!(
            RESOURCE.strategy.validate_update(&changed, &event())[0].display(),
            "message: Invalid value: \"other\": field is immutable"
        );
    }

    #[test]
    fn selectable_fields_and_row() {
        let f = RESOURCE.strategy.selectable_fields(&event());
        assert_eq!(f.len(), RESOURCE.strategy.selectable_field_names().len());
        assert!(f.contains(&("regarding.kind", "Deployment".to_string())));
        assert!(f.contains(&("reportingController", "deployment-controller".to_string())));
        let row = RESOURCE.strategy.row(&event());
        assert_eq!(row[3], "deployment/web");
        assert_eq!(row[6], "Scaled up");
        assert_eq!(row[8], 1);
    }
}
