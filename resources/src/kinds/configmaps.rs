//! core/v1 ConfigMap.

use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::ResourceType;
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    strategy: &ConfigMaps,
};

struct ConfigMaps;

/// Kubernetes' limit on a configmap's total data size.
const MAX_SIZE: usize = 1024 * 1024;

impl Strategy for ConfigMaps {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let mut total = 0;
        let mut seen = std::collections::HashSet::new();
        for field in ["data", "binaryData"] {
            let Some(map) = obj.get(field).and_then(Value::as_object) else {
                continue;
            };
            for (key, value) in map {
                for msg in validation::config_map_key(key) {
                    causes.push(Cause::invalid(format!("{field}[{key}]"), &json!(key), msg));
                }
                if !seen.insert(key.clone()) {
                    causes.push(Cause::invalid(
                        format!("{field}[{key}]"),
                        &json!(key),
                        "duplicate of key present in data",
                    ));
                }
                total += value.as_str().map_or(0, str::len);
            }
        }
        if total > MAX_SIZE {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "",
                format!("Too long: must have at most {MAX_SIZE} bytes"),
            ));
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new("Data", "integer", "Number of data entries")])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let count = ["data", "binaryData"]
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .map(|m| m.len())
            .sum::<usize>();
        name_age_row(obj, vec![json!(count)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_keys_and_counts_data() {
        let obj = json!({"metadata": {"name": "c"}, "data": {"ok": "1", "bad/key": "2"}});
        let causes = RESOURCE.strategy.validate(&obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "data[bad/key]");
        assert_eq!(RESOURCE.strategy.row(&obj)[1], json!(2));
    }
}
