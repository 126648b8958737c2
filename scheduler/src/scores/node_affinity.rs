//! NodeAffinity's score: the weights of the pod's preferred node affinity terms that
//! the node matches, scaled so the best node gets 100.

use crate::framework::{default_normalize, Context, CycleState, ScorePlugin};
use crate::nodeinfo::NodeInfo;
use keelson_component::scheduling::term_matches;

pub struct NodeAffinity;

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, cx: Context, _: &mut CycleState, _: &[&NodeInfo]) -> bool {
        !cx.pod.preferred_node_terms.is_empty()
    }

    fn score(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> i64 {
        cx.pod
            .preferred_node_terms
            .iter()
            .filter(|(_, t)| term_matches(t, &node.name, node.labels()))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(scores, false);
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
    fn preferred_terms() {
        let c = cache(&[
            node("n1", "4", json!({"disk": "ssd"})),
            node("n2", "4", json!({"disk": "hdd"})),
            node("n3", "4", json!({})),
        ]);
        let p = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}}),
        );
        assert_eq!(scores(&NodeAffinity, &c, &p).unwrap(), [100, 20, 0]);
    }
}
