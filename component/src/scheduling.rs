//! Where a pod may run, judged the same way by the scheduler and by the controllers
//! that place or evict pods themselves (DaemonSet, node lifecycle): tolerations
//! against taints, and node selector terms. Kubernetes keeps these in
//! `component-helpers/scheduling/corev1` for the same reason.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Taint, Toleration};

/// The only field a node selector term's `matchFields` may name.
const NODE_NAME_FIELD: &str = "metadata.name";

/// `Toleration.ToleratesTaint`: an empty effect or key matches any; `Exists` ignores
/// the value, `Equal` (the default) compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// For each taint the first toleration that tolerates it; `None` when one is not
/// tolerated at all (`GetMatchingTolerations`).
pub fn matching_tolerations<'a>(
    taints: &[&Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| tolerations.iter().find(|t| tolerates(t, taint)))
        .collect()
}

/// One node selector term: every label expression and every field requirement (only
/// `metadata.name`, with `In` or `NotIn`) holds; a term with neither matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|e| {
        requirement(
            labels.get(&e.key).map(String::as_str),
            &e.operator,
            e.values.as_deref().unwrap_or_default(),
        )
    }) && fields.iter().all(|f| {
        f.key == NODE_NAME_FIELD
            && matches!(f.operator.as_str(), "In" | "NotIn")
            && requirement(
                Some(node_name),
                &f.operator,
                f.values.as_deref().unwrap_or_default(),
            )
    })
}

/// Terms are ORed.
pub fn any_term_matches(
    terms: &[NodeSelectorTerm],
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    terms.iter().any(|t| term_matches(t, node_name, labels))
}

/// A `NodeSelectorRequirement` on one value (`None`: the label is absent). `Gt` and
/// `Lt` compare integers and need exactly one value; an unknown operator fails.
fn requirement(value: Option<&str>, op: &str, values: &[String]) -> bool {
    match op {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if op == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn labels(v: serde_json::Value) -> BTreeMap<String, String> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let t = taint("k", Some("v"), "NoExecute");
        assert!(tolerates(
            &toleration(json!({"key": "k", "value": "v"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "value": "w"})),
            &t
        ));
        let exists = json!({"key": "k", "operator": "Exists", "effect": "NoExecute"});
        assert!(tolerates(&toleration(exists), &t));
        let other_effect = json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"});
        assert!(!tolerates(&toleration(other_effect), &t));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        let unknown = json!({"key": "k", "operator": "Matches", "value": "v"});
        assert!(!tolerates(&toleration(unknown), &t));

        let tols = [toleration(json!({"key": "k", "operator": "Exists"}))];
        let other = taint("x", None, "NoExecute");
        assert!(tolerated(&tols, &t));
        assert!(!tolerated(&tols, &other));
        assert!(matching_tolerations(&[&t], &tols).is_some());
        assert!(matching_tolerations(&[&t, &other], &tols).is_none());
    }

    #[test]
    fn node_selector_terms() {
        let term: NodeSelectorTerm = serde_json::from_value(json!({
            "matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]},
                                 {"key": "zone", "operator": "In", "values": ["a", "b"]}],
            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n2"]}]
        }))
        .unwrap();
        let l = labels(json!({"cores": "8", "zone": "a"}));
        assert!(term_matches(&term, "n1", &l));
        assert!(!term_matches(&term, "n2", &l));
        assert!(!term_matches(
            &term,
            "n1",
            &labels(json!({"cores": "4", "zone": "a"}))
        ));
        assert!(!term_matches(&NodeSelectorTerm::default(), "n1", &l));

        let other_field: NodeSelectorTerm = serde_json::from_value(json!({
            "matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]
        }))
        .unwrap();
        assert!(!term_matches(&other_field, "n1", &l), "only metadata.name");
        assert!(
            any_term_matches(&[other_field, term], "n1", &l),
            "terms are ORed"
        );
    }
}
