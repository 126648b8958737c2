//! `x-kubernetes-validations`: CEL rules on structural schema nodes, checked when a
//! CRD is written ([`check`]) and evaluated on every custom resource write
//! ([`validate`]), worded as apiextensions-apiserver words both.
//!
//! A rule sees its node's value as `self` and, on update, the old value as `oldSelf`.
//! A rule that reads `oldSelf` (a transition rule) runs only where an old value
//! exists: correlated by property name, by key for maps (unless
//! `x-kubernetes-map-type: atomic`) and by the map keys of `x-kubernetes-list-type:
//! map` lists; with `optionalOldSelf` it runs on creates too, `oldSelf` then being an
//! `optional`.

use super::schema::Schema;
use keelson_apimachinery::Cause;
use keelson_cel::{Binding, EvalErrorKind, Program, PER_CALL_LIMIT, RUNTIME_BUDGET};
use serde_json::{json, Value};
use std::sync::Arc;

/// One entry of `x-kubernetes-validations`, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub reason: String,
    pub field_path: String,
    pub optional_old_self: bool,
    pub program: Result<Arc<Program>, String>,
    pub message_program: Option<Result<Arc<Program>, String>>,
}

fn env() -> keelson_cel::Env {
    keelson_cel::Env::new(&["self", "oldSelf"])
}

impl Rule {
    pub fn parse(v: &Value) -> Rule {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let rule = s("rule");
        let message_expression = s("messageExpression");
        let compile = |src: &str| env().compile(src.trim()).map(Arc::new);
        Rule {
            program: compile(&rule),
            message_program: (!message_expression.trim().is_empty())
                .then(|| compile(&message_expression)),
            rule,
            message: s("message"),
            message_expression,
            reason: s("reason"),
            field_path: s("fieldPath"),
            optional_old_self: v.get("optionalOldSelf").and_then(Value::as_bool) == Some(true),
        }
    }

    /// The rule as messages name it: its message if it has one, else its text.
    fn shown(&self) -> &str {
        if self.message.trim().is_empty() {
            self.rule.trim()
        } else {
            self.message.trim()
        }
    }
}

pub fn parse_all(v: &Value) -> Vec<Rule> {
    v.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::parse).collect())
        .unwrap_or_default()
}

const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

fn has_newline(s: &str) -> bool {
    s.contains('\n') || s.contains('\r')
}

/// A `fieldPath` (`.spec.x`, `.labels['a.b']`) resolved against `schema`: the field
/// path it names relative to the node (`spec.x`, `labels[a.b]`), or why not.
pub fn field_path(path: &str, schema: &Schema) -> Result<String, String> {
    let mut out = String::new();
    let mut node = schema;
    let mut rest = path;
    let step = |name: &str, node: &mut &Schema, out: &mut String| -> Result<(), String> {
        if !node.properties.is_empty() {
            let child = node
                .properties
                .get(name)
                .ok_or("does not refer to a valid field")?;
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            *node = child;
            Ok(())
        } else if let Some(Some(each)) = &node.additional {
            out.push_str(&format!("[{name}]"));
            *node = each;
            Ok(())
        } else {
            Err("does not refer to a valid field".into())
        }
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("unexpected end of JSON path".into());
            }
            step(&r[..end], &mut node, &mut out)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or("unexpected end of JSON path")?;
            step(&r[..end], &mut node, &mut out)?;
            rest = &r[end + 2..];
        } else {
            return Err(format!("expected [ or . but got: {rest}"));
        }
    }
    Ok(out)
}

/// Whether `self.<path>` names a field the schema at `node` can have: `None` when
/// it can, else the first field that it cannot.
fn undefined_field<'a>(node: &Schema, path: &'a [String], root: bool) -> Option<&'a str> {
    let (first, rest) = path.split_first()?;
    if root && (first == "metadata" || first == "apiVersion" || first == "kind") {
        return None;
    }
    if node.preserve_unknown || node.int_or_string || node.type_.is_empty() {
        return None;
    }
    if node.type_ != "object" {
        return Some(first);
    }
    match (node.properties.get(first), &node.additional) {
        (Some(child), _) => undefined_field(child, rest, child.embedded_resource),
        (None, Some(Some(each))) => undefined_field(each, rest, each.embedded_resource),
        (None, Some(None)) => None,
        (None, None) => Some(first),
    }
}

/// What is wrong with the `x-kubernetes-validations` of the schema node `node` (JSON)
/// at `path` (`spec.validation.openAPIV3Schema.properties[spec]`). `root` is whether
/// the node is a resource root (the schema root or an embedded resource).
pub fn check(node: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let Some(list) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    let schema = Schema::parse(node);
    for (i, (raw, rule)) in list.iter().zip(&schema.rules).enumerate() {
        let p = format!("{path}.x-kubernetes-validations[{i}]");
        let before = out.len();
        let (r, m) = (rule.rule.trim(), rule.message.trim());
        if r.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{p}.rule"),
                "Required value: rule is not specified",
            ));
        } else if !rule.message.is_empty() && m.is_empty() {
            out.push(Cause::invalid(
                format!("{p}.message"),
                &json!(rule.message),
                "message must be non-empty if specified",
            ));
        } else if rule.message.len() > 2048 {
            out.push(Cause::invalid(
                format!("{p}.message"),
                &json!(rule.message),
                "message must have a maximum length of 2048 characters",
            ));
        } else if has_newline(m) {
            out.push(Cause::invalid(
                format!("{p}.message"),
                &json!(rule.message),
                "message must not contain line breaks",
            ));
        } else if has_newline(r) && m.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{p}.message"),
                "Required value: message must be specified if rule contains line breaks",
            ));
        }
        if !rule.message_expression.is_empty() && rule.message_expression.trim().is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{p}.messageExpression"),
                "Required value: messageExpression must be non-empty if specified",
            ));
        }
        if !rule.reason.is_empty() && !REASONS.contains(&rule.reason.as_str()) {
            out.push(Cause::not_supported(
                format!("{p}.reason"),
                &json!(rule.reason),
                REASONS,
            ));
        }
        if !rule.field_path.is_empty() {
            let fp = &rule.field_path;
            let problem = if fp.trim().is_empty() {
                Some("fieldPath must be non-empty if specified")
            } else if has_newline(fp) {
                Some("fieldPath must not contain line breaks")
            } else if field_path(fp.trim(), &schema).is_err() {
                Some("fieldPath must be a valid path")
            } else {
                None
            };
            if let Some(problem) = problem {
                out.push(Cause::invalid(
                    format!("{p}.fieldPath"),
                    &json!(fp),
                    problem,
                ));
            }
        }
        // As Kubernetes: rules are compiled only once the rest of them is right.
        if out.len() > before {
            continue;
        }
        match &rule.program {
            Err(issues) => out.push(Cause::invalid(
                format!("{p}.rule"),
                raw,
                format!("compilation failed: {issues}"),
            )),
            Ok(program) => {
                let undefined: Vec<String> = program
                    .selections()
                    .iter()
                    .filter_map(|s| {
                        let field = undefined_field(&schema, &s.path, root)?;
                        Some(keelson_cel::issue_at(
                            program.source(),
                            s.line,
                            s.column,
                            &format!("undefined field '{field}'"),
                        ))
                    })
                    .collect();
                if !undefined.is_empty() {
                    out.push(Cause::invalid(
                        format!("{p}.rule"),
                        raw,
                        format!("compilation failed: {}", undefined.join("\n")),
                    ));
                } else if program.literal_type().is_some_and(|t| t != "bool") {
                    out.push(Cause::invalid(
                        format!("{p}.rule"),
                        raw,
                        "cel expression must evaluate to a bool",
                    ));
                }
                if rule.optional_old_self && !program.uses("oldSelf") {
                    out.push(Cause::forbidden(
                        format!("{p}.optionalOldSelf"),
                        "may not be set if rule does not use oldSelf",
                    ));
                }
            }
        }
        match &rule.message_program {
            Some(Err(issues)) => out.push(Cause::invalid(
                format!("{p}.messageExpression"),
                raw,
                format!("messageExpression compilation failed: {issues}"),
            )),
            Some(Ok(m)) if m.literal_type().is_some_and(|t| t != "string") => {
                out.push(Cause::invalid(
                    format!("{p}.messageExpression"),
                    raw,
                    "messageExpression must evaluate to a string",
                ))
            }
            _ => {}
        }
    }
}

/// Evaluate every rule of `schema` on `new` (`old` on update), adding a cause per
/// failure. The runtime cost budget is Kubernetes' for one object.
pub fn validate(schema: &Schema, new: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
    let mut budget = RUNTIME_BUDGET as i64;
    walk(schema, new, old, "", &mut budget, out);
}

/// `spec.x`, `spec.items[0]`, `spec.labels[a]`: field paths as `field.Path` prints
/// them (map keys in brackets).
fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    schema: &Schema,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    budget: &mut i64,
    out: &mut Vec<Cause>,
) {
    if !schema.has_rules || new.is_null() || *budget < 0 {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    evaluate(schema, new, old, path, budget, out);
    for each in &schema.all_of {
        if *budget < 0 {
            return;
        }
        walk(each, new, old, path, budget, out);
    }
    match new {
        Value::Object(m) => {
            let old_map = old
                .and_then(Value::as_object)
                .filter(|_| schema.map_type != "atomic");
            for (k, v) in m {
                if *budget < 0 {
                    return;
                }
                let old_v = old_map.and_then(|o| o.get(k));
                if let Some(p) = schema.properties.get(k) {
                    walk(p, v, old_v, &child(path, k), budget, out);
                } else if let Some(Some(each)) = &schema.additional {
                    walk(each, v, old_v, &format!("{path}[{k}]"), budget, out);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = &schema.items else { return };
            let old_items = old.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                if *budget < 0 {
                    return;
                }
                let old_v = if schema.list_type == "map" {
                    old_items.and_then(|o| {
                        o.iter()
                            .find(|x| schema.list_map_keys.iter().all(|k| x.get(k) == v.get(k)))
                    })
                } else {
                    None
                };
                walk(item, v, old_v, &format!("{path}[{i}]"), budget, out);
            }
        }
        _ => {}
    }
}

/// `"object"`, `"string"`: the value Kubernetes shows in a rule's Invalid cause.
fn type_value(schema: &Schema) -> Value {
    json!(schema.type_)
}

fn evaluate(
    schema: &Schema,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    budget: &mut i64,
    out: &mut Vec<Cause>,
) {
    let shown_type = type_value(schema);
    for rule in &schema.rules {
        let program = match &rule.program {
            Ok(p) => p,
            Err(e) => {
                out.push(Cause::invalid(
                    path,
                    &shown_type,
                    format!("rule compile error: {e}"),
                ));
                continue;
            }
        };
        let transition = program.uses("oldSelf");
        if transition && old.is_none() && !rule.optional_old_self {
            continue;
        }
        let mut bindings = vec![("self", Binding::Json(new))];
        if rule.optional_old_self {
            bindings.push(("oldSelf", Binding::Optional(old)));
        } else if let Some(o) = old {
            bindings.push(("oldSelf", Binding::Json(o)));
        }
        let limit = PER_CALL_LIMIT.min(*budget as u64);
        let result = program.eval_bool(&bindings, limit);
        let cost = match &result {
            Ok((_, c)) => *c,
            Err(e) => e.cost,
        };
        match result {
            Err(e) if e.kind == EvalErrorKind::CostLimit && limit < PER_CALL_LIMIT => {
                out.push(Cause::invalid(
                    path,
                    &shown_type,
                    "validation failed due to running out of cost budget, no further validation rules will be run",
                ));
                *budget = -1;
                return;
            }
            Err(e) if e.kind == EvalErrorKind::CostLimit => {
                out.push(Cause::invalid(
                    path,
                    &shown_type,
                    format!(
                        "'{e}': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                        rule.shown()
                    ),
                ));
                *budget = -1;
                return;
            }
            Err(e) if e.kind == EvalErrorKind::NoSuchOverload => {
                *budget -= cost as i64;
                out.push(Cause::invalid(
                    path,
                    &shown_type,
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                        rule.shown()
                    ),
                ));
            }
            Err(e) => {
                *budget -= cost as i64;
                out.push(Cause::invalid(
                    path,
                    &shown_type,
                    format!("{e} evaluating rule: {}", rule.shown()),
                ));
            }
            Ok((true, _)) => *budget -= cost as i64,
            Ok((false, _)) => {
                *budget -= cost as i64;
                let at = match field_path(rule.field_path.trim(), schema) {
                    Ok(p) if !p.is_empty() && p.starts_with('[') => format!("{path}{p}"),
                    Ok(p) if !p.is_empty() => child(path, &p),
                    _ => path.to_string(),
                };
                let detail = message(rule, &bindings, budget).unwrap_or_else(|| {
                    if rule.message.trim().is_empty() {
                        format!("failed rule: {}", rule.rule.trim())
                    } else {
                        rule.message.trim().to_string()
                    }
                });
                out.push(match rule.reason.as_str() {
                    "FieldValueForbidden" => Cause::forbidden(at, detail),
                    "FieldValueRequired" => Cause::new(
                        "FieldValueRequired",
                        at,
                        format!("Required value: {detail}"),
                    ),
                    "FieldValueDuplicate" => Cause::duplicate(at, &shown_type),
                    _ => Cause::invalid(at, &shown_type, detail),
                });
            }
        }
        if *budget < 0 {
            return;
        }
    }
}

/// The `messageExpression`'s message, when it evaluates to a usable one; Kubernetes
/// falls back to `message` otherwise.
fn message(rule: &Rule, bindings: &[(&str, Binding<'_>)], budget: &mut i64) -> Option<String> {
    let program = rule.message_program.as_ref()?.as_ref().ok()?;
    let limit = PER_CALL_LIMIT.min((*budget).max(0) as u64);
    match program.eval_string(bindings, limit) {
        Ok((s, cost)) => {
            *budget -= cost as i64;
            let s = s.trim();
            (!s.is_empty() && !has_newline(s) && s.len() <= 5000).then(|| s.to_string())
        }
        Err(e) => {
            *budget -= e.cost as i64;
            None
        }
    }
}

#[cfg(test)]
mod tests;
