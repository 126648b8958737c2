use super::*;
use serde_json::json;

fn rules_schema() -> Schema {
    Schema::parse(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                    {"rule": "!has(self.mode) || self.mode != 'off' || self.replicas == 0",
                     "messageExpression": "'mode off needs 0 replicas, not ' + string(self.replicas)",
                     "fieldPath": ".replicas"},
                ],
                "properties": {
                    "replicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "mode": {"type": "string"},
                    "name": {"type": "string",
                             "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
                    "ports": {"type": "array",
                              "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object",
                                        "x-kubernetes-validations": [
                                            {"rule": "self.port > 0", "reason": "FieldValueForbidden"},
                                            {"rule": "self.port >= oldSelf.port", "message": "port may only grow"}],
                                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "labels": {"type": "object",
                               "additionalProperties": {"type": "string",
                                   "x-kubernetes-validations": [{"rule": "size(self) < 5"}]}},
                    "floor": {"type": "integer",
                              "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || self >= oldSelf.value()",
                                                            "optionalOldSelf": true, "message": "floor may not drop"}]},
                }
            }
        }
    }))
}

fn run(new: &Value, old: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    validate(&rules_schema(), new, old, &mut out);
    out.iter().map(Cause::display).collect()
}

#[test]
fn rules_are_evaluated_where_they_are_declared() {
    let good = json!({"spec": {"replicas": 1, "maxReplicas": 3, "name": "a",
        "ports": [{"name": "http", "port": 80}], "labels": {"a": "x"}, "floor": 1}});
    assert_eq!(run(&good, None), Vec::<String>::new());
    let bad = json!({"spec": {"replicas": 5, "maxReplicas": 3, "mode": "off",
        "ports": [{"name": "http", "port": 0}], "labels": {"a": "x", "b": "toolong"}}});
    assert_eq!(
        run(&bad, None),
        vec![
            "spec: Invalid value: \"object\": replicas must not exceed maxReplicas",
            "spec.replicas: Invalid value: \"object\": mode off needs 0 replicas, not 5",
            "spec.ports[0]: Forbidden: failed rule: self.port > 0",
            "spec.labels[b]: Invalid value: \"string\": failed rule: size(self) < 5",
        ]
    );
    // Nulls are not validated (the schema's own checks deal with them).
    assert!(run(&json!({"spec": null}), None).is_empty());
}

#[test]
fn transition_rules_run_only_where_an_old_value_correlates() {
    let old = json!({"spec": {"replicas": 1, "maxReplicas": 3, "name": "a", "floor": 5,
        "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53}]}});
    // Creates skip transition rules, except optionalOldSelf ones (oldSelf absent).
    assert!(run(&old, None).is_empty());
    // Same values: fine.
    assert!(run(&old, Some(&old)).is_empty());
    // Changed name, a port that shrank (matched by its key, not its index), a lower floor;
    // a new port has no old value and is not checked.
    let new = json!({"spec": {"replicas": 1, "maxReplicas": 3, "name": "b", "floor": 4,
        "ports": [{"name": "new", "port": 1}, {"name": "dns", "port": 50}, {"name": "http", "port": 80}]}});
    assert_eq!(
        run(&new, Some(&old)),
        vec![
            "spec.name: Invalid value: \"string\": Value is immutable",
            "spec.floor: Invalid value: \"integer\": floor may not drop",
            "spec.ports[1]: Invalid value: \"object\": port may only grow",
        ]
    );
    // A field that was absent has no old value: the immutability rule does not run.
    let old_without = json!({"spec": {"replicas": 1, "maxReplicas": 3}});
    assert!(run(&old, Some(&old_without)).is_empty());
}

#[test]
fn runtime_errors_and_the_cost_limit_are_reported_as_kubernetes() {
    let schema = Schema::parse(&json!({"type": "object", "properties": {"spec": {
    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
    "x-kubernetes-validations": [
        {"rule": "self.missing == 1"},
        {"rule": "self.n > 'x'"},
        {"rule": "self.l.all(a, self.l.all(b, self.l.all(c, a + b + c > 0)))", "message": "deep"},
        {"rule": "self.never == 1"},
    ]}}}));
    let obj = json!({"spec": {"n": 1, "l": (1..=200).collect::<Vec<i64>>()}});
    let mut out = Vec::new();
    validate(&schema, &obj, None, &mut out);
    let shown: Vec<String> = out.iter().map(Cause::display).collect();
    assert_eq!(
        shown,
        vec![
            "spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing == 1",
            "spec: Invalid value: \"object\": 'no such overload': call arguments did not match a supported operator, function or macro signature for rule: self.n > 'x'",
            "spec: Invalid value: \"object\": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: deep",
        ]
    );
}

fn checked(schema: Value) -> Vec<String> {
    let p = "spec.validation.openAPIV3Schema";
    super::super::schema::check(&schema, p)
        .iter()
        .map(Cause::display)
        .collect()
}

#[test]
fn rules_are_checked_when_the_crd_is_written() {
    let p = "spec.validation.openAPIV3Schema";
    let shown = checked(json!({"type": "object", "properties": {"spec": {
    "type": "object",
    "properties": {"replicas": {"type": "integer"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "x-kubernetes-validations": [
        {"rule": "self.replicas <"},
        {"rule": "self.replicas > 0 && self.replicaz > 0"},
        {"rule": "42"},
        {"rule": " "},
        {"rule": "self.replicas > 0", "reason": "Bogus", "fieldPath": ".nope"},
        {"rule": "self.replicas > 0", "optionalOldSelf": true},
        {"rule": "self.replicas > 0", "messageExpression": "'a' +"},
        {"rule": "self.labels.x == 'y' && self == oldSelf", "fieldPath": ".labels['x.y']", "messageExpression": "'ok'"},
        {"rule": "self.replicas > 0\n&& true"},
    ]}}}));
    let rule0 = r#"{"rule":"self.replicas <"}"#;
    let rule1 = r#"{"rule":"self.replicas > 0 && self.replicaz > 0"}"#;
    let s = format!("{p}.properties[spec].x-kubernetes-validations");
    assert_eq!(
        shown,
        vec![
            format!("{s}[0].rule: Invalid value: {rule0}: compilation failed: ERROR: <input>:1:16: Syntax error: mismatched input '<EOF>' expecting {{'[', '{{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}}\n | self.replicas <\n | ...............^"),
            format!("{s}[1].rule: Invalid value: {rule1}: compilation failed: ERROR: <input>:1:26: undefined field 'replicaz'\n | self.replicas > 0 && self.replicaz > 0\n | .........................^"),
            format!("{s}[2].rule: Invalid value: {{\"rule\":\"42\"}}: cel expression must evaluate to a bool"),
            format!("{s}[3].rule: Required value: rule is not specified"),
            format!("{s}[4].fieldPath: Invalid value: \".nope\": fieldPath must be a valid path"),
            format!("{s}[4].reason: Unsupported value: \"Bogus\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""),
            format!("{s}[5].optionalOldSelf: Forbidden: may not be set if rule does not use oldSelf"),
            format!("{s}[6].messageExpression: Invalid value: {{\"rule\":\"self.replicas > 0\",\"messageExpression\":\"'a' +\"}}: messageExpression compilation failed: ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>' expecting {{'[', '{{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}}\n | 'a' +\n | .....^"),
            format!("{s}[8].message: Required value: message must be specified if rule contains line breaks"),
        ]
    );
}

#[test]
fn field_paths_resolve_against_the_schema() {
    let s = Schema::parse(&json!({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"c": {"type": "integer"}}}}}}));
    assert_eq!(field_path(".a.b", &s).as_deref(), Ok("a.b"));
    assert_eq!(field_path(".m['k.1'].c", &s).as_deref(), Ok("m[k.1].c"));
    assert_eq!(field_path("['a']", &s).as_deref(), Ok("a"));
    assert!(field_path(".a.x", &s).is_err());
    assert!(field_path("a", &s).is_err());
    assert!(field_path(".a.b.c", &s).is_err());
}
