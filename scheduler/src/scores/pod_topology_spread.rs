//! PodTopologySpread's score (`whenUnsatisfiable: ScheduleAnyway`): fewer matching pods
//! in the node's domains is better. Per constraint a node scores
//! `count * ln(domains + 2) + (maxSkew - 1)`; scores are then inverted to 0..100
//! (`100 * (max + min - s) / max`). Feasible nodes lacking a topology key score 0.

use std::collections::{HashMap, HashSet};

use crate::filters::count_matching_pods;
use crate::framework::{Context, CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::{NodeInfo, HOSTNAME_LABEL};
use crate::podinfo::SpreadConstraint;

pub struct PodTopologySpread;

/// A node's score when it lacks a required topology key.
pub const IGNORED: i64 = i64::MIN;

#[derive(Clone)]
struct SoftState {
    constraints: Vec<SpreadConstraint>,
    /// Per constraint: matching pods per topology value (hostname: counted per node).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

/// `ln(size + 2)`: constraints over more domains weigh more.
pub fn topology_weight(size: usize) -> f64 {
    ((size + 2) as f64).ln()
}

/// `scoreForCount`.
pub fn score_for_count(count: i64, max_skew: i32, weight: f64) -> f64 {
    count as f64 * weight + f64::from(max_skew - 1)
}

/// Invert raw spreading scores to 0..=100; [`IGNORED`] nodes get 0.
pub fn normalize_spread(scores: &mut [i64]) {
    let valid = scores.iter().copied().filter(|s| *s != IGNORED);
    let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    for s in scores.iter_mut() {
        *s = if *s == IGNORED {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, cx: Context, state: &mut CycleState, nodes: &[&NodeInfo]) -> bool {
        let constraints: Vec<SpreadConstraint> =
            cx.pod.spread.iter().filter(|c| !c.hard).cloned().collect();
        if constraints.is_empty() {
            return false;
        }
        let eligible = |n: &NodeInfo| crate::filters::spread_eligible(cx.pod, &constraints, n);
        // Domains of the feasible nodes; counted over every eligible node.
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        let mut weights = Vec::new();
        for (i, c) in constraints.iter().enumerate() {
            let values: HashSet<&String> = nodes
                .iter()
                .filter(|n| eligible(n))
                .filter_map(|n| n.labels().get(&c.topology_key))
                .collect();
            weights.push(topology_weight(values.len()));
            if c.topology_key != HOSTNAME_LABEL {
                counts[i] = values.into_iter().map(|v| (v.clone(), 0)).collect();
            }
        }
        for node in cx.cache.nodes().iter().filter(|n| eligible(n)) {
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME_LABEL {
                    continue;
                }
                if let Some(n) = counts[i].get_mut(&node.labels()[&c.topology_key]) {
                    *n += count_matching_pods(cx.pod, c, node);
                }
            }
        }
        state.insert(SoftState {
            constraints,
            counts,
            weights,
        });
        true
    }

    fn score(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> i64 {
        let Some(s) = state.get::<SoftState>() else {
            return 0;
        };
        if !crate::filters::spread_eligible(cx.pod, &s.constraints, node) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let count = if c.topology_key == HOSTNAME_LABEL {
                count_matching_pods(cx.pod, c, node)
            } else {
                s.counts[i]
                    .get(&node.labels()[&c.topology_key])
                    .copied()
                    .unwrap_or(0)
            };
            score += score_for_count(count, c.max_skew, s.weights[i]);
        }
        score.round() as i64
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        normalize_spread(scores);
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
    fn fewer_matching_pods_in_the_zone_is_better() {
        let mut c = cache(&[
            node("a1", "4", json!({ZONE_LABEL: "a"})),
            node("a2", "4", json!({ZONE_LABEL: "a"})),
            node("b1", "4", json!({ZONE_LABEL: "b"})),
            node("x", "4", json!({})),
        ]);
        let web = |n: &str| {
            pod(
                json!({"metadata": {"name": n, "labels": {"app": "web"}}, "spec": {"containers": [],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
            )
        };
        c.assume(Arc::new(web("w1")), 0);
        c.assume(Arc::new(web("w2")), 1);
        let s = scores(&PodTopologySpread, &c, &web("w3")).unwrap();
        assert_eq!(s[3], 0, "no zone label");
        assert!(s[2] > s[0] && s[0] == s[1], "{s:?}");
        assert_eq!(s[2], 100);
    }
}
