//! core/v1 Event.
//!
//! Validation is Kubernetes' legacy event validation (the event's namespace must
//! match `involvedObject.namespace`; events with an `eventTime` need the reporting
//! fields). Names only need to be usable as a path segment, as on Kubernetes. The
//! table is kubectl's event table (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, and more
//! with `-o wide`); events.k8s.io events share it.

use crate::podspec::str_at;
use crate::strategy::Strategy;
use crate::table::{age_of, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    strategy: &Events,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Event>()),
    merge: Some(Root::MetadataOnly),
};

struct Events;

pub(crate) const REPORTING_INSTANCE_MAX: usize = 128;
pub(crate) const ACTION_MAX: usize = 128;
pub(crate) const REASON_MAX: usize = 128;
pub(crate) const NOTE_MAX: usize = 1024;

/// A timestamp field that is set (Go's non-zero time).
pub(crate) fn time_set(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// `legacyValidateEvent`, on an event in core/v1 shape. Paths use Kubernetes'
/// internal field names (`reportingController`), as its messages do.
pub(crate) fn legacy_validate(ev: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let ns = meta::namespace(ev);
    let involved_ns = ev
        .get("involvedObject")
        .map_or("", |o| str_at(o, "namespace"));
    let mismatch = || {
        Cause::invalid(
            "involvedObject.namespace",
            &json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if !time_set(ev, "eventTime") {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                out.push(mismatch());
            }
        } else if ns != involved_ns {
            out.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            out.push(mismatch());
        }
        let controller = str_at(ev, "reportingComponent");
        if controller.is_empty() {
            out.push(Cause::required("reportingController"));
        }
        for msg in validation::qualified_name(controller) {
            out.push(Cause::invalid(
                "reportingController",
                &json!(controller),
                msg,
            ));
        }
        let too_long = |field: &str, max: usize| {
            Cause::invalid(
                field,
                &json!(""),
                format!("can have at most {max} characters"),
            )
        };
        for (field, max) in [
            ("reportingInstance", REPORTING_INSTANCE_MAX),
            ("action", ACTION_MAX),
            ("reason", REASON_MAX),
        ] {
            let value = str_at(ev, field);
            if value.is_empty() {
                out.push(Cause::required(field));
            }
            if value.len() > max {
                out.push(too_long(field, max));
            }
        }
        if str_at(ev, "message").len() > NOTE_MAX {
            out.push(too_long("message", NOTE_MAX));
        }
    }
    for msg in validation::dns1123_subdomain(ns) {
        out.push(Cause::invalid("namespace", &json!(ns), msg));
    }
    out
}

/// The event table's columns (shared with events.k8s.io).
pub(crate) fn event_columns() -> Vec<Column> {
    vec![
        Column::new(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        Column::new(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future",
        ),
        Column::new(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        Column::new("Object", "string", "The object that this event is about."),
        Column::new(
            "Subobject",
            "string",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
        )
        .wide(),
        Column::new(
            "Source",
            "string",
            "The component reporting this event. Should be a short machine understandable string.",
        )
        .wide(),
        Column::new(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
        ),
        Column::new(
            "First Seen",
            "string",
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        )
        .wide(),
        Column::new(
            "Count",
            "string",
            "The number of times this event has occurred.",
        )
        .wide(),
        Column {
            priority: 1,
            ..Column::name()
        },
    ]
}

/// kubectl's `printEvent`, on an event in core/v1 shape.
pub(crate) fn event_row(ev: &Value) -> TableRow {
    let age = |key: &str| {
        let t = str_at(ev, key);
        if t.is_empty() {
            "<unknown>".to_string()
        } else {
            age_of(t)
        }
    };
    let first = if time_set(ev, "firstTimestamp") {
        age("firstTimestamp")
    } else {
        age("eventTime")
    };
    let mut last = if time_set(ev, "lastTimestamp") {
        age("lastTimestamp")
    } else {
        first.clone()
    };
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last = match str_at(series, "lastObservedTime") {
            "" => "<unknown>".to_string(),
            t => age_of(t),
        };
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0) + 1;
    } else if count == 0 {
        count = 1;
    }
    let involved = ev.get("involvedObject").cloned().unwrap_or(json!({}));
    let kind = str_at(&involved, "kind").to_lowercase();
    let name = str_at(&involved, "name");
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let source = ev.get("source").cloned().unwrap_or(json!({}));
    let mut source_parts = vec![str_at(&source, "component")];
    if !str_at(&source, "host").is_empty() {
        source_parts.push(str_at(&source, "host"));
    }
    vec![
        json!(last),
        json!(str_at(ev, "type")),
        json!(str_at(ev, "reason")),
        json!(target),
        json!(str_at(&involved, "fieldPath")),
        json!(source_parts.join(", ")),
        json!(str_at(ev, "message").trim()),
        json!(first),
        json!(count),
        name_cell(ev),
    ]
}

pub(crate) const SELECTABLE: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// `EventToSelectableFields`, on an event in core/v1 shape.
pub(crate) fn core_selectable_fields(ev: &Value) -> Vec<(&'static str, String)> {
    let involved = ev.get("involvedObject").cloned().unwrap_or(json!({}));
    let field = |k: &str| str_at(&involved, k).to_string();
    vec![
        ("involvedObject.kind", field("kind")),
        ("involvedObject.namespace", field("namespace")),
        ("involvedObject.name", field("name")),
        ("involvedObject.uid", field("uid")),
        ("involvedObject.apiVersion", field("apiVersion")),
        ("involvedObject.resourceVersion", field("resourceVersion")),
        ("involvedObject.fieldPath", field("fieldPath")),
        ("reason", str_at(ev, "reason").to_string()),
        (
            "reportingComponent",
            str_at(ev, "reportingComponent").to_string(),
        ),
        (
            "source",
            ev.get("source")
                .map_or("", |s| str_at(s, "component"))
                .to_string(),
        ),
        ("type", str_at(ev, "type").to_string()),
    ]
}

impl Strategy for Events {
    fn expires(&self) -> bool {
        true
    }

    fn default_garbage_collection_policy(&self) -> crate::strategy::GcPolicy {
        crate::strategy::GcPolicy::Unsupported
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        legacy_validate(obj)
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        core_selectable_fields(obj)
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        SELECTABLE
    }

    fn columns(&self) -> Vec<Column> {
        event_columns()
    }

    fn row(&self, obj: &Value) -> TableRow {
        event_row(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({
            "metadata": {"name": "web-1.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled", "message": "Pulled image \"nginx\" \n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "count": 3
        })
    }

    #[test]
    fn namespace_must_match_involved_object() {
        assert!(RESOURCE.strategy.validate(&event()).is_empty());
        let mut e = event();
        e["involvedObject"]["namespace"] = json!("other");
        assert_eq!(
            RESOURCE.strategy.validate(&e)[0].display(),
            "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
        );
        let mut new_style = event();
        new_style["eventTime"] = json!("2025-01-01T00:00:00.000000Z");
        let fields: Vec<String> = RESOURCE
            .strategy
            .validate(&new_style)
            .iter()
            .map(|c| c.field.clone())
            .collect();
        assert_eq!(
            fields,
            // An empty controller is required, and (as Go's IsQualifiedName says of an
            // empty name) neither non-empty nor of the right form.
            vec![
                "reportingController",
                "reportingController",
                "reportingController",
                "reportingInstance",
                "action"
            ]
        );
    }

    #[test]
    fn table_row_like_kubectl() {
        let row = RESOURCE.strategy.row(&event());
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(row[0], "<unknown>");
        assert_eq!(
            &row[1..7],
            &[
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-1"),
                json!("spec.containers{web}"),
                json!("kubelet, node-1"),
                json!("Pulled image \"nginx\"")
            ]
        );
        assert_eq!(row[8], 3);
        assert_eq!(row[9], "web-1.17a");
        assert_eq!(RESOURCE.strategy.columns()[9].priority, 1);
    }

    #[test]
    fn selectable_fields() {
        let f = RESOURCE.strategy.selectable_fields(&event());
        assert_eq!(f.len(), SELECTABLE.len());
        assert!(f.contains(&("involvedObject.name", "web-1".to_string())));
        assert!(f.contains(&("source", "kubelet".to_string())));
        assert!(RESOURCE.strategy.validate_name("a/b").len() == 1);
    }
}
