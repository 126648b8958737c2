//! InterPodAffinity's score: per topology pair, the weights of the pod's preferred
//! (anti-)affinity terms matched by placed pods there, plus placed pods' preferred
//! terms and required affinity (weight 1) matching this pod; scaled min..max to 0..100.
//! Placed pods are scanned in full only when this pod has preferred terms; otherwise
//! only the cache's index of pods with affinity terms.

use std::collections::HashMap;

use crate::framework::{Context, CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct InterPodAffinity;

/// `hardPodAffinityWeight`: how much a placed pod's required affinity counts.
const HARD_AFFINITY_WEIGHT: i64 = 1;

/// topology key -> value -> score.
#[derive(Clone, Default)]
struct TopologyScores(HashMap<String, HashMap<String, i64>>);

impl TopologyScores {
    fn add(&mut self, node: &NodeInfo, key: &str, w: i64) {
        if let Some(v) = node.labels().get(key) {
            *self
                .0
                .entry(key.to_string())
                .or_default()
                .entry(v.clone())
                .or_insert(0) += w;
        }
    }

    /// Count placed pod `e` on `node` for incoming pod `cx.pod`.
    fn process(&mut self, cx: Context, node: &NodeInfo, e: &PodInfo) {
        let ns = |p: &PodInfo| cx.cache.namespace_labels(&p.namespace);
        let pod = cx.pod;
        for t in &pod.preferred_affinity {
            if t.matches(e, ns(e)) {
                self.add(node, &t.topology_key, i64::from(t.weight));
            }
        }
        for t in &pod.preferred_anti_affinity {
            if t.matches(e, ns(e)) {
                self.add(node, &t.topology_key, -i64::from(t.weight));
            }
        }
        for t in &e.required_affinity {
            if t.matches(pod, ns(pod)) {
                self.add(node, &t.topology_key, HARD_AFFINITY_WEIGHT);
            }
        }
        for t in &e.preferred_affinity {
            if t.matches(pod, ns(pod)) {
                self.add(node, &t.topology_key, i64::from(t.weight));
            }
        }
        for t in &e.preferred_anti_affinity {
            if t.matches(pod, ns(pod)) {
                self.add(node, &t.topology_key, -i64::from(t.weight));
            }
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, cx: Context, state: &mut CycleState, _: &[&NodeInfo]) -> bool {
        let pod = cx.pod;
        let mut scores = TopologyScores::default();
        if !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty() {
            for node in cx.cache.nodes().iter().filter(|n| n.node.is_some()) {
                for e in &node.pods {
                    scores.process(cx, node, e);
                }
            }
        } else {
            for (node, e) in cx.cache.affinity_pods() {
                if node.node.is_some() {
                    scores.process(cx, node, e);
                }
            }
        }
        if scores.0.is_empty() {
            return false;
        }
        state.insert(scores);
        true
    }

    fn score(&self, _: Context, state: &CycleState, node: &NodeInfo) -> i64 {
        let Some(s) = state.get::<TopologyScores>() else {
            return 0;
        };
        let labels = node.labels();
        s.0.iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?))
            .sum()
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::nodeinfo::ZONE_LABEL;
    use crate::podinfo::testing::pod;
    use crate::scores::testing::scores;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn preferred_affinity_and_anti_affinity() {
        let mut c = cache(&[
            node("n1", "4", json!({ZONE_LABEL: "a"})),
            node("n2", "4", json!({ZONE_LABEL: "a"})),
            node("n3", "4", json!({ZONE_LABEL: "b"})),
        ]);
        c.assume(
            Arc::new(pod(
                json!({"metadata": {"name": "db", "labels": {"app": "db"}}}),
            )),
            0,
        );
        c.assume(
            Arc::new(pod(
                json!({"metadata": {"name": "noisy", "labels": {"app": "noisy"}}}),
            )),
            2,
        );
        let p = pod(
            json!({"metadata": {"name": "web"}, "spec": {"containers": [], "affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm":
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": ZONE_LABEL}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm":
                {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        );
        // Raw: n1 10, n2 10, n3 -5.
        assert_eq!(scores(&InterPodAffinity, &c, &p).unwrap(), [100, 100, 0]);
        assert!(scores(&InterPodAffinity, &c, &pod(json!({}))).is_none());
    }
}
