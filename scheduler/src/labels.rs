//! Matching: label selectors (pod affinity, topology spread), node selector terms
//! (node affinity, with `matchFields`), and taints against tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A compiled `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    reqs: Vec<(String, Op)>,
    nothing: bool,
}

impl Selector {
    /// Matches no object (a nil selector in affinity terms and spread constraints).
    pub fn nothing() -> Selector {
        Selector {
            reqs: Vec::new(),
            nothing: true,
        }
    }

    /// `LabelSelectorAsSelector`: nil matches nothing, empty matches everything; an
    /// invalid operator makes the selector match nothing.
    pub fn new(ls: Option<&LabelSelector>) -> Selector {
        let Some(ls) = ls else {
            return Selector::nothing();
        };
        let mut reqs = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            reqs.push((k.clone(), Op::In(vec![v.clone()])));
        }
        for e in ls.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Selector::nothing(),
            };
            reqs.push((e.key.clone(), op));
        }
        Selector {
            reqs,
            nothing: false,
        }
    }

    /// Add `key in (value)` (a spread constraint's `matchLabelKeys`).
    pub fn require(&mut self, key: &str, value: &str) {
        self.reqs
            .push((key.to_string(), Op::In(vec![value.to_string()])));
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing
            && self.reqs.iter().all(|(k, op)| {
                let v = labels.get(k);
                match op {
                    Op::In(vals) => v.is_some_and(|v| vals.contains(v)),
                    Op::NotIn(vals) => v.is_none_or(|v| !vals.contains(v)),
                    Op::Exists => v.is_some(),
                    Op::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// One node selector term: every expression and field requirement must hold; a term
/// with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let requirement = |value: Option<&str>, op: &str, values: &[String]| -> bool {
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
    };
    exprs.iter().all(|e| {
        requirement(
            labels.get(&e.key).map(String::as_str),
            &e.operator,
            e.values.as_deref().unwrap_or_default(),
        )
    }) && fields.iter().all(|f| {
        // Only metadata.name is a supported field.
        let value = (f.key == "metadata.name").then_some(node_name);
        f.key == "metadata.name"
            && requirement(value, &f.operator, f.values.as_deref().unwrap_or_default())
    })
}

/// Terms are ORed.
pub fn any_term_matches(terms: &[NodeSelectorTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| term_matches(t, node_name, labels))
}

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any toleration tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// A taint from its parts.
pub fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_string(),
        value: Some(value.to_string()).filter(|v| !v.is_empty()),
        effect: effect.to_string(),
        time_added: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: serde_json::Value) -> Labels {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn label_selectors() {
        let ls: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]},
                                 {"key": "env", "operator": "Exists"}]
        }))
        .unwrap();
        let s = Selector::new(Some(&ls));
        assert!(s.matches(&labels(json!({"app": "web", "env": "prod"}))));
        assert!(!s.matches(&labels(json!({"app": "web", "env": "prod", "tier": "db"}))));
        assert!(!s.matches(&labels(json!({"app": "web"}))));
        assert!(!Selector::new(None).matches(&labels(json!({}))));
        assert!(Selector::new(Some(&LabelSelector::default())).matches(&labels(json!({}))));
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
    }

    #[test]
    fn tolerations() {
        let t: Toleration = serde_json::from_value(
            json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}),
        )
        .unwrap();
        assert!(tolerates(&t, &taint("k", "v", "NoSchedule")));
        assert!(!tolerates(&t, &taint("k", "w", "NoSchedule")));
        assert!(!tolerates(&t, &taint("k", "v", "NoExecute")));
        let all: Toleration = serde_json::from_value(json!({"operator": "Exists"})).unwrap();
        assert!(tolerates(&all, &taint("any", "x", "NoExecute")));
    }
}
