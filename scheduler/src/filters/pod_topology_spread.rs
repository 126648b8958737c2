//! PodTopologySpread (`whenUnsatisfiable: DoNotSchedule`): placing the pod must not make
//! the number of matching pods in the node's domain exceed the least populated
//! domain's by more than `maxSkew`.
//!
//! PreFilter counts, per constraint, the matching pods (same namespace, not
//! terminating) in every domain of the nodes that are eligible: those that have every
//! constraint's topology key and, with `nodeAffinityPolicy: Honor`, match the pod's
//! node selector and affinity. With fewer domains than `minDomains`, the minimum is 0.

use std::collections::HashMap;

use crate::filters::matches_node_selector_and_affinity;
use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{PodInfo, SpreadConstraint};

pub struct PodTopologySpread;

const NAME: &str = "PodTopologySpread";

#[derive(Clone)]
struct SpreadState {
    /// The pod's hard constraints.
    constraints: Vec<SpreadConstraint>,
    /// Per constraint: matching pods per topology value (every eligible domain present).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count, or 0 with fewer domains than `minDomains`.
    min: Vec<i64>,
}

/// Whether `node` counts as a domain for the constraints (shared with the score).
pub fn eligible(pod: &PodInfo, constraints: &[SpreadConstraint], node: &NodeInfo) -> bool {
    let labels = node.labels();
    node.node.is_some()
        && constraints
            .iter()
            .all(|c| labels.contains_key(&c.topology_key))
        && (constraints.iter().all(|c| !c.honor_node_affinity)
            || matches_node_selector_and_affinity(pod, node))
}

/// Pods on `node` that `c` counts for `pod`.
pub fn count_matching_pods(pod: &PodInfo, c: &SpreadConstraint, node: &NodeInfo) -> i64 {
    node.pods.iter().filter(|p| counts(pod, c, p)).count() as i64
}

fn counts(pod: &PodInfo, c: &SpreadConstraint, p: &PodInfo) -> bool {
    p.namespace == pod.namespace && !p.terminating && c.selector.matches(&p.labels)
}

impl SpreadState {
    fn recompute_min(&mut self, i: usize) {
        let c = &self.constraints[i];
        self.min[i] = if (self.counts[i].len() as i32) < c.min_domains {
            0
        } else {
            self.counts[i].values().copied().min().unwrap_or(0)
        };
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, cx: Context, state: &mut CycleState) -> Result<(), Status> {
        let constraints: Vec<SpreadConstraint> =
            cx.pod.spread.iter().filter(|c| c.hard).cloned().collect();
        if constraints.is_empty() {
            return Ok(());
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in cx.cache.nodes() {
            if !eligible(cx.pod, &constraints, node) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                let value = node.labels()[&c.topology_key].clone();
                *counts[i].entry(value).or_insert(0) += count_matching_pods(cx.pod, c, node);
            }
        }
        let mut s = SpreadState {
            min: vec![0; constraints.len()],
            constraints,
            counts,
        };
        for i in 0..s.constraints.len() {
            s.recompute_min(i);
        }
        state.insert(s);
        Ok(())
    }

    fn filter(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let Some(s) = state.get::<SpreadState>() else {
            return Ok(());
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Err(Status::unresolvable(
                    NAME,
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            let own = i64::from(c.selector.matches(&cx.pod.labels));
            if matching + own - s.min[i] > i64::from(c.max_skew) {
                return Err(Status::unschedulable(
                    NAME,
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    fn update_state(
        &self,
        cx: Context,
        state: &mut CycleState,
        node: &NodeInfo,
        pod: &PodInfo,
        delta: i64,
    ) {
        let Some(s) = state.get_mut::<SpreadState>() else {
            return;
        };
        if !eligible(cx.pod, &s.constraints, node) {
            return;
        }
        for i in 0..s.constraints.len() {
            let c = &s.constraints[i];
            if counts(cx.pod, c, pod) {
                let value = node.labels()[&c.topology_key].clone();
                *s.counts[i].entry(value).or_insert(0) += delta;
                s.recompute_min(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::filters::testing::{reason, run};
    use crate::nodeinfo::ZONE_LABEL;
    use crate::podinfo::testing::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn spread_pod(name: &str, max_skew: i32) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"containers": [],
            "topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": ZONE_LABEL,
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        )
    }

    #[test]
    fn skew_per_zone() {
        let mut c = cache(&[
            node("a1", "4", json!({ZONE_LABEL: "a"})),
            node("b1", "4", json!({ZONE_LABEL: "b"})),
            node("x", "4", json!({})),
        ]);
        c.assume(Arc::new(spread_pod("p1", 1)), 0);
        let p = spread_pod("p2", 1);
        assert_eq!(
            reason(run(&PodTopologySpread, &c, &p, 0)),
            "node(s) didn't match pod topology spread constraints"
        );
        assert_eq!(reason(run(&PodTopologySpread, &c, &p, 1)), "ok");
        assert_eq!(
            reason(run(&PodTopologySpread, &c, &p, 2)),
            "node(s) didn't match pod topology spread constraints (missing required label)"
        );
        assert_eq!(
            reason(run(&PodTopologySpread, &c, &spread_pod("p3", 2), 0)),
            "ok"
        );
    }

    #[test]
    fn dry_run_updates_counts() {
        let mut c = cache(&[
            node("a1", "4", json!({ZONE_LABEL: "a"})),
            node("b1", "4", json!({ZONE_LABEL: "b"})),
        ]);
        let existing = Arc::new(spread_pod("p1", 1));
        c.assume(existing.clone(), 0);
        let p = spread_pod("p2", 1);
        let cx = Context { pod: &p, cache: &c };
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(cx, &mut state).unwrap();
        assert!(PodTopologySpread.filter(cx, &state, c.node(0)).is_err());
        PodTopologySpread.update_state(cx, &mut state, c.node(0), &existing, -1);
        assert!(PodTopologySpread.filter(cx, &state, c.node(0)).is_ok());
    }
}
