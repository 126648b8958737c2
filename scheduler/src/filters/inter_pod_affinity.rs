//! InterPodAffinity: required pod affinity and anti-affinity, both the incoming pod's
//! and, symmetrically, the anti-affinity of pods already placed.
//!
//! PreFilter counts, per topology pair (key, value), the placed pods that match all of
//! the pod's affinity terms, that match its anti-affinity terms, and whose own
//! anti-affinity terms match the pod. Placed pods with anti-affinity are indexed by the
//! cache; the full scan over pods happens only for pods that have required terms.

use std::collections::HashMap;

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo};

pub struct InterPodAffinity;

const NAME: &str = "InterPodAffinity";

/// topology key -> value -> count.
type Counts = HashMap<String, HashMap<String, i64>>;

#[derive(Clone, Default)]
struct AffinityState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
}

fn add(counts: &mut Counts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.labels().get(key) {
        *counts
            .entry(key.to_string())
            .or_default()
            .entry(v.clone())
            .or_insert(0) += delta;
    }
}

fn get(counts: &Counts, node: &NodeInfo, key: &str) -> i64 {
    node.labels()
        .get(key)
        .and_then(|v| counts.get(key)?.get(v))
        .copied()
        .unwrap_or(0)
}

fn term_matches(cx: Context, term: &AffinityTerm, p: &PodInfo) -> bool {
    term.matches(p, cx.cache.namespace_labels(&p.namespace))
}

impl AffinityState {
    /// Count (or uncount) placed pod `e` on `node` for incoming pod `cx.pod`.
    fn count(&mut self, cx: Context, node: &NodeInfo, e: &PodInfo, delta: i64) {
        for t in &e.required_anti_affinity {
            if term_matches(cx, t, cx.pod) {
                add(&mut self.existing_anti, node, &t.topology_key, delta);
            }
        }
        let pod = cx.pod;
        if !pod.required_affinity.is_empty()
            && pod.required_affinity.iter().all(|t| term_matches(cx, t, e))
        {
            for t in &pod.required_affinity {
                add(&mut self.affinity, node, &t.topology_key, delta);
            }
        }
        for t in &pod.required_anti_affinity {
            if term_matches(cx, t, e) {
                add(&mut self.anti, node, &t.topology_key, delta);
            }
        }
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, cx: Context, state: &mut CycleState) -> Result<(), Status> {
        let pod = cx.pod;
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let mut s = AffinityState::default();
        if own_terms {
            for node in cx.cache.nodes().iter().filter(|n| n.node.is_some()) {
                for e in &node.pods {
                    s.count(cx, node, e, 1);
                }
            }
        } else {
            for (node, e) in cx.cache.anti_affinity_pods() {
                for t in &e.required_anti_affinity {
                    if term_matches(cx, t, pod) {
                        add(&mut s.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
            if s.existing_anti.is_empty() {
                return Ok(());
            }
        }
        state.insert(s);
        Ok(())
    }

    fn filter(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let Some(s) = state.get::<AffinityState>() else {
            return Ok(());
        };
        let pod = cx.pod;
        if !pod.required_affinity.is_empty() {
            let labels = node.labels();
            if !pod
                .required_affinity
                .iter()
                .all(|t| labels.contains_key(&t.topology_key))
            {
                return Err(affinity_failed());
            }
            let exist = pod
                .required_affinity
                .iter()
                .all(|t| get(&s.affinity, node, &t.topology_key) > 0);
            // The first of a group of pods with affinity to each other may go anywhere.
            let first = s.affinity.is_empty()
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| term_matches(cx, t, pod));
            if !exist && !first {
                return Err(affinity_failed());
            }
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| get(&s.anti, node, &t.topology_key) > 0)
        {
            return Err(Status::unschedulable(
                NAME,
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        let labels = node.labels();
        let existing = s.existing_anti.iter().any(|(key, values)| {
            labels
                .get(key)
                .is_some_and(|v| values.get(v).is_some_and(|n| *n > 0))
        });
        if existing {
            return Err(Status::unschedulable(
                NAME,
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
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
        if let Some(s) = state.get_mut::<AffinityState>() {
            s.count(cx, node, pod, delta);
        }
    }
}

fn affinity_failed() -> Status {
    Status::unresolvable(NAME, "node(s) didn't match pod affinity rules")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::filters::testing::{reason, run};
    use crate::podinfo::testing::pod;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn with(name: &str, app: &str, affinity: Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"containers": [], "affinity": affinity}}))
    }

    fn term(app: &str) -> Value {
        json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}])
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut c = cache(&[node("n1", "4", json!({})), node("n2", "4", json!({}))]);
        c.assume(Arc::new(with("a", "web", json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}))), 0);
        let incoming = with(
            "b",
            "web",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}),
        );
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &incoming, 0)),
            "node(s) didn't match pod anti-affinity rules"
        );
        assert_eq!(reason(run(&InterPodAffinity, &c, &incoming, 1)), "ok");
        // A pod without terms is kept away by the placed pod's anti-affinity.
        let plain = with("c", "web", json!({}));
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &plain, 0)),
            "node(s) didn't satisfy existing pods anti-affinity rules"
        );
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &with("d", "db", json!({})), 0)),
            "ok"
        );
    }

    #[test]
    fn affinity_and_the_first_pod() {
        let mut c = cache(&[node("n1", "4", json!({})), node("n2", "4", json!({}))]);
        let follower = with(
            "f",
            "cache",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &follower, 0)),
            "node(s) didn't match pod affinity rules"
        );
        let selfish = with(
            "s",
            "db",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &selfish, 0)),
            "ok",
            "first of its group"
        );
        c.assume(Arc::new(with("db", "db", json!({}))), 1);
        assert_eq!(
            reason(run(&InterPodAffinity, &c, &follower, 0)),
            "node(s) didn't match pod affinity rules"
        );
        assert_eq!(reason(run(&InterPodAffinity, &c, &follower, 1)), "ok");
    }
}
