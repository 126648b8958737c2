//! `matchConditions`: CEL expressions that decide, once a hook's rules and selectors
//! matched, whether it is called (Kubernetes' `webhook/matchconditions` matcher).
//!
//! Every condition is evaluated with `object`, `oldObject` (null where the operation
//! has none) and `request` (the AdmissionRequest, without the objects). Any condition
//! false: the hook is skipped, whatever the others gave. Otherwise any error (or a
//! stored condition that no longer compiles) is reported, for the hook's failure policy
//! to decide about; all true: the hook is called.

use keelson_cel::{Binding, EvalErrorKind, Program, PER_CALL_LIMIT};
use keelson_resources::kinds::webhookconfigurations::compile_match_condition;
use serde_json::Value;

/// Kubernetes' cost budget for all the match conditions of one hook on one request
/// (`RuntimeCELCostBudgetMatchConditions`).
pub const BUDGET: u64 = 2_500_000;

/// One `matchConditions[]` entry, compiled.
pub struct MatchCondition {
    pub name: String,
    expression: String,
    program: Result<Program, String>,
}

/// The conditions of one webhook object.
pub fn compile(hook: &Value) -> Vec<MatchCondition> {
    keelson_resources::podspec::items(hook, "matchConditions")
        .iter()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            MatchCondition {
                name: s("name").to_string(),
                expression: s("expression").trim().to_string(),
                program: compile_match_condition(s("expression")),
            }
        })
        .collect()
}

/// What the conditions decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Call,
    /// Condition `name` was false.
    Skip(String),
    /// Evaluation failed: the message Kubernetes gives (one error, or `[a, b]`).
    Error(String),
}

/// Evaluate `conditions` for one request.
pub fn evaluate(
    conditions: &[MatchCondition],
    request: &Value,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> Decision {
    let null = Value::Null;
    let bindings = [
        ("object", Binding::Json(object.unwrap_or(&null))),
        ("oldObject", Binding::Json(old_object.unwrap_or(&null))),
        ("request", Binding::Json(request)),
    ];
    let mut remaining = BUDGET;
    let mut errors = Vec::new();
    for c in conditions {
        let program = match &c.program {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!(
                    "expression '{}' resulted in error: {e}",
                    c.expression
                ));
                continue;
            }
        };
        match program.eval_bool(&bindings, remaining.min(PER_CALL_LIMIT)) {
            Ok((false, _)) => return Decision::Skip(c.name.clone()),
            Ok((true, cost)) => remaining = remaining.saturating_sub(cost),
            Err(e) if e.kind == EvalErrorKind::CostLimit && remaining < PER_CALL_LIMIT => {
                // The hook's budget, not this expression's limit, ran out.
                return Decision::Error(
                    "validation failed due to running out of cost budget, no further validation rules will be run".into(),
                );
            }
            Err(e) => {
                remaining = remaining.saturating_sub(e.cost);
                errors.push(format!(
                    "expression '{}' resulted in error: {}",
                    c.expression, e.message
                ));
            }
        }
    }
    match errors.len() {
        0 => Decision::Call,
        1 => Decision::Error(errors.remove(0)),
        _ => Decision::Error(format!("[{}]", errors.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conditions(exprs: &[&str]) -> Vec<MatchCondition> {
        let list: Vec<Value> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"name": format!("c{i}"), "expression": e}))
            .collect();
        compile(&json!({ "matchConditions": list }))
    }

    fn decide(exprs: &[&str], object: Option<&Value>) -> Decision {
        let request = json!({"operation": "CREATE", "namespace": "default",
            "userInfo": {"username": "jane"}});
        evaluate(&conditions(exprs), &request, object, None)
    }

    #[test]
    fn all_true_calls_and_any_false_skips() {
        let cm = json!({"metadata": {"name": "x", "labels": {"skip": "yes"}}});
        assert_eq!(decide(&[], Some(&cm)), Decision::Call);
        assert_eq!(
            decide(
                &[
                    "request.operation == 'CREATE'",
                    "request.userInfo.username == 'jane' && oldObject == null",
                    "object.metadata.name == 'x'",
                ],
                Some(&cm)
            ),
            Decision::Call
        );
        let by_label = "!has(object.metadata.labels) || !('skip' in object.metadata.labels)";
        assert_eq!(
            decide(&["true", by_label], Some(&cm)),
            Decision::Skip("c1".into())
        );
        assert_eq!(
            decide(&[by_label], Some(&json!({"metadata": {"name": "y"}}))),
            Decision::Call
        );
        // A false condition skips the hook even when another one failed.
        assert_eq!(
            decide(&["object.spec.x == 1", "false"], Some(&cm)),
            Decision::Skip("c1".into())
        );
    }

    #[test]
    fn errors_are_reported_in_kubernetes_words() {
        let cm = json!({"metadata": {"name": "x"}});
        assert_eq!(
            decide(&["object.spec.x == 1"], Some(&cm)),
            Decision::Error(
                "expression 'object.spec.x == 1' resulted in error: no such key: spec".into()
            )
        );
        // No object (a DELETE): `object` is null.
        assert!(matches!(
            decide(&["object.metadata.name == 'x'"], None),
            Decision::Error(e) if e.starts_with("expression 'object.metadata.name == 'x'' resulted in error: ")
        ));
        assert_eq!(
            decide(&["true", "1 / 0 == 1", "object.metadata.name"], Some(&cm)),
            Decision::Error("[expression '1 / 0 == 1' resulted in error: division by zero, expression 'object.metadata.name' resulted in error: cel expression must evaluate to a bool, got string]".into())
        );
        // A stored condition that no longer compiles fails like an evaluation.
        assert!(matches!(
            decide(&["object.metadata.name =="], Some(&cm)),
            Decision::Error(e) if e.contains("resulted in error: compilation failed: ERROR: <input>:1:")
        ));
    }

    #[test]
    fn costly_conditions_stop_at_the_call_limit_then_the_budget() {
        let expensive = "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, true))))))";
        let at_limit = format!(
            "expression '{expensive}' resulted in error: {}",
            keelson_cel::LIMIT_EXCEEDED
        );
        assert_eq!(decide(&[expensive], None), Decision::Error(at_limit));
        // Two spend a million each; the third passes what is left of the budget.
        assert_eq!(
            decide(&[expensive, expensive, expensive], None),
            Decision::Error("validation failed due to running out of cost budget, no further validation rules will be run".into())
        );
    }
}
