//! JSON values as CEL values: objects become maps with string keys, integers `int`
//! (`uint` past `i64`), other numbers `double`, as Kubernetes binds unstructured
//! objects.

use cel::objects::{Key, Map, OptionalValue};
use cel::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The CEL value of a JSON value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(m) => {
            let map: HashMap<Key, Value> = m
                .iter()
                .map(|(k, x)| (Key::String(Arc::new(k.clone())), from_json(x)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// An `optional` CEL value (`optionalOldSelf`): `optional.of(v)` or `optional.none()`.
pub fn optional(v: Option<&serde_json::Value>) -> Value {
    Value::Opaque(Arc::new(match v {
        Some(v) => OptionalValue::of(from_json(v)),
        None => OptionalValue::none(),
    }))
}

/// The CEL type name of a value, as messages name it (`bool`, `int`, `string`, ...).
pub fn type_name(v: &Value) -> String {
    match v {
        Value::Float(_) => "double".into(),
        Value::Opaque(o) => o.runtime_type_name().to_string(),
        other => other.type_of().to_string(),
    }
}
