//! Server-side table columns (`kubectl get` without `-o`).
//!
//! A strategy names its columns and renders one row of cells per object; the apiserver
//! wraps them into a `meta.k8s.io/v1 Table`. Helpers here format cells the way
//! kubectl's printers do (ages as `5m12s`, `<none>` for empty).

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the first column; otherwise usually "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 shows always; 1 only with `-o wide`.
    pub priority: i32,
}

impl Column {
    pub const fn new(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        Column {
            name,
            type_,
            format: "",
            description,
            priority: 0,
        }
    }
    /// Shown only with `-o wide`.
    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
    /// The NAME column every table starts with.
    pub const fn name() -> Self {
        Column {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            priority: 0,
        }
    }
    /// The AGE column most tables end with.
    pub const fn age() -> Self {
        Column::new(
            "Age",
            "string",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        )
    }
}

/// The cells of one row, in column order.
pub type TableRow = Vec<Value>;

/// The object's name as a cell.
pub fn name_cell(obj: &Value) -> Value {
    Value::String(keelson_apimachinery::meta::name(obj).to_string())
}

/// The object's age as kubectl prints it (`<unknown>` when unset).
pub fn age_cell(obj: &Value) -> Value {
    Value::String(age_of(keelson_apimachinery::meta::str_field(
        obj,
        "creationTimestamp",
    )))
}

/// Age of an RFC 3339 timestamp relative to now, in kubectl's `HumanDuration` style.
pub fn age_of(timestamp: &str) -> String {
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => human_duration(Utc::now().signed_duration_since(t).num_seconds()),
        Err(_) => "<unknown>".to_string(),
    }
}

/// kubectl's `duration.HumanDuration`: `45s`, `5m12s`, `3h10m`, `2d5h`, `400d`, `3y12d`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 60 * 3 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let d = h / 24;
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let y = h / 24 / 365;
        let dy = (h / 24) % 365;
        return if dy == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{dy}d")
        };
    }
    format!("{}y", h / 24 / 365)
}

/// A string cell, `<none>` when empty.
pub fn or_none(s: &str) -> Value {
    Value::String(if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(5 * 60 + 12), "5m12s");
        assert_eq!(human_duration(30 * 60), "30m");
        assert_eq!(human_duration(3 * 3600 + 600), "3h10m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 5 * 3600), "3d5h");
        assert_eq!(human_duration(400 * 86400), "400d");
    }
}
