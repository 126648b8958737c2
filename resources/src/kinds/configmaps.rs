//! core/v1 ConfigMap.

use crate::kinds::secrets::{immutable_rules, too_long, validate_base64_map, MAX_SIZE};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
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
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::ConfigMap>()),
    merge: Some(Root::MetadataOnly),
};

struct ConfigMaps;

impl Strategy for ConfigMaps {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let mut total = 0;
        let binary = obj.get("binaryData").and_then(Value::as_object);
        if let Some(map) = obj.get("data").and_then(Value::as_object) {
            for (key, value) in map {
                for msg in validation::config_map_key(key) {
                    causes.push(Cause::invalid(format!("data[{key}]"), &json!(key), msg));
                }
                if binary.is_some_and(|b| b.contains_key(key)) {
                    causes.push(Cause::invalid(
                        format!("data[{key}]"),
                        &json!(key),
                        "duplicate of key present in binaryData",
                    ));
                }
                total += value.as_str().map_or(0, str::len);
            }
        }
        total += validate_base64_map(obj, "binaryData", &mut causes);
        if total > MAX_SIZE {
            causes.push(too_long("", MAX_SIZE));
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        immutable_rules(new, old, &["data", "binaryData"])
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Data",
            "string",
            "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
        )])
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

    #[test]
    fn duplicate_keys_and_bad_binary_data() {
        let obj = json!({"data": {"k": "v"}, "binaryData": {"k": "dg==", "b": "!!"}});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&obj)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "data[k]: Invalid value: \"k\": duplicate of key present in binaryData",
                "binaryData[b]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 0",
            ]
        );
    }

    #[test]
    fn immutable_configmaps_keep_their_data() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        let c = RESOURCE.strategy.validate_update(&new, &old);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].display(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
        let unfreeze = json!({"immutable": false, "data": {"a": "1"}});
        assert_eq!(
            RESOURCE.strategy.validate_update(&unfreeze, &old)[0].field,
            "immutable"
        );
        assert!(RESOURCE
            .strategy
            .validate_update(&new, &json!({"data": {"a": "1"}}))
            .is_empty());
    }
}
