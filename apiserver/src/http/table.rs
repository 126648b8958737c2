//! `meta.k8s.io/v1 Table` responses for `kubectl get`.

use keelson_resources::ResourceType;
use serde_json::{json, Value};

/// `includeObject`: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: &str) -> Include {
        match s {
            "None" => Include::None,
            "Object" => Include::Object,
            _ => Include::Metadata,
        }
    }
}

fn row(rt: &ResourceType, obj: &Value, include: Include) -> Value {
    let mut r = json!({"cells": rt.strategy.row(obj)});
    match include {
        Include::None => {}
        Include::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
        Include::Object => r["object"] = obj.clone(),
    }
    r
}

pub fn table(
    rt: &ResourceType,
    objs: &[Value],
    list_meta: Value,
    include: Include,
    v1beta1: bool,
    with_columns: bool,
) -> Value {
    let columns: Vec<Value> = if with_columns {
        rt.strategy
            .columns()
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": if v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": objs.iter().map(|o| row(rt, o, include)).collect::<Vec<_>>(),
    })
}

/// `PartialObjectMetadata` of one object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}
