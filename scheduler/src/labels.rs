//! Label selectors (pod affinity, topology spread). Node selector terms and
//! tolerations are `keelson_component::scheduling`'s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
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
}
