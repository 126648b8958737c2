//! TaintToleration's score: fewer untolerated `PreferNoSchedule` taints is better.

use crate::framework::{default_normalize, Context, CycleState, ScorePlugin};
use crate::nodeinfo::NodeInfo;
use keelson_component::scheduling::tolerates;

pub struct TaintToleration;

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn weight(&self) -> i64 {
        3
    }

    fn score(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> i64 {
        let relevant = cx.pod.tolerations.iter().filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        });
        let relevant: Vec<_> = relevant.collect();
        node.details()
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !relevant.iter().any(|tol| tolerates(tol, t)))
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::podinfo::testing::pod;
    use crate::scores::testing::scores;
    use serde_json::json;

    #[test]
    fn prefer_no_schedule() {
        let mut tainted = node("n1", "4", json!({}));
        tainted.spec = Some(serde_json::from_value(json!({"taints": [
            {"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]})).unwrap());
        let mut one = node("n2", "4", json!({}));
        one.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "a", "effect": "PreferNoSchedule"}]}))
                .unwrap(),
        );
        let c = cache(&[tainted, one, node("n3", "4", json!({}))]);
        assert_eq!(
            scores(&TaintToleration, &c, &pod(json!({}))).unwrap(),
            [0, 50, 100]
        );
        let tolerant = pod(
            json!({"spec": {"containers": [], "tolerations": [{"key": "a", "operator": "Exists"}]}}),
        );
        assert_eq!(
            scores(&TaintToleration, &c, &tolerant).unwrap(),
            [0, 100, 100]
        );
    }
}
