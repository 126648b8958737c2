//! One scheduling decision, as kube-scheduler's `schedulePod`: PreFilter; the pod's
//! nominated node first; then filters over the nodes from a rotating start until
//! enough feasible nodes are found; weighted scores; the best node, ties broken at
//! random.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cache::Cache;
use crate::config::num_feasible_nodes_to_find;
use crate::fit_error::{Diagnosis, FitError};
use crate::framework::{Context, CycleState, Framework};
use crate::nodeinfo::NodeInfo;
use crate::parallel::parallel_map;
use crate::podinfo::PodInfo;

/// Why no node was chosen.
pub enum Failure {
    /// The cluster has no nodes.
    NoNodes,
    /// Nodes exist, none fits; the state after PreFilter is kept for preemption.
    Fit(FitError, CycleState),
}

/// What persists between decisions.
pub struct Algorithm {
    pub framework: Framework,
    pub percentage_of_nodes_to_score: u32,
    pub parallelism: usize,
    /// Where the next search starts, so that successive pods look at different nodes.
    next_start: usize,
    rng: SmallRng,
}

impl Algorithm {
    pub fn new(framework: Framework, percentage: u32, parallelism: usize) -> Algorithm {
        Algorithm {
            framework,
            percentage_of_nodes_to_score: percentage,
            parallelism: parallelism.max(1),
            next_start: 0,
            rng: SmallRng::from_os_rng(),
        }
    }

    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// The node (cache index) for `pod`.
    pub fn schedule(&mut self, cache: &Cache, pod: &PodInfo) -> Result<usize, Failure> {
        let all = cache.node_count();
        if all == 0 {
            return Err(Failure::NoNodes);
        }
        let fw = &self.framework;
        let cx = Context { pod, cache };
        let mut state = CycleState::default();
        let mut diagnosis = Diagnosis::default();
        if let Err(s) = fw.pre_filter(cx, &mut state) {
            diagnosis.pre_filter = Some(s);
            return Err(Failure::Fit(
                FitError {
                    num_all_nodes: all,
                    diagnosis,
                },
                state,
            ));
        }
        if let Some(i) = cache.node_index(&pod.nominated_node) {
            let n = cache.node(i);
            if n.node.is_some() && fw.filter_with_nominated(cx, &state, n).is_ok() {
                return Ok(i);
            }
        }
        let feasible = self.find_feasible(cx, &state, &mut diagnosis);
        match feasible[..] {
            [] => Err(Failure::Fit(
                FitError {
                    num_all_nodes: all,
                    diagnosis,
                },
                state,
            )),
            [only] => Ok(only),
            _ => Ok(self.prioritize(cx, &mut state, &feasible)),
        }
    }

    fn find_feasible(&mut self, cx: Context, state: &CycleState, d: &mut Diagnosis) -> Vec<usize> {
        let fw = &self.framework;
        let nodes = cx.cache.nodes();
        let len = nodes.len();
        let want =
            num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, cx.cache.node_count());
        let start = self.next_start % len;
        let mut feasible = Vec::with_capacity(want);
        let mut pos = 0;
        while pos < len && feasible.len() < want {
            let round = (want - feasible.len()).max(256).min(len - pos);
            let batch: Vec<usize> = (pos..pos + round).map(|k| (start + k) % len).collect();
            let results = parallel_map(&batch, self.parallelism, |&i| {
                let n: &NodeInfo = &nodes[i];
                n.node
                    .as_ref()
                    .map(|_| fw.filter_with_nominated(cx, state, n))
            });
            for (i, r) in batch.iter().zip(results) {
                pos += 1;
                match r {
                    None => {}
                    Some(Ok(())) => feasible.push(*i),
                    Some(Err(s)) => {
                        d.statuses.insert(*i, s);
                    }
                }
                if feasible.len() >= want {
                    break;
                }
            }
        }
        self.next_start = (start + pos) % len;
        feasible
    }

    fn prioritize(&mut self, cx: Context, state: &mut CycleState, feasible: &[usize]) -> usize {
        let nodes: Vec<&NodeInfo> = feasible.iter().map(|i| cx.cache.node(*i)).collect();
        let mut total = vec![0i64; nodes.len()];
        for plugin in &self.framework.scores {
            if !plugin.pre_score(cx, state, &nodes) {
                continue;
            }
            let st: &CycleState = state;
            let mut scores = parallel_map(&nodes, self.parallelism, |n| plugin.score(cx, st, n));
            plugin.normalize(state, &mut scores);
            let weight = plugin.weight();
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        // The best score; ties broken uniformly at random (reservoir sampling).
        let (mut best, mut ties) = (0, 1);
        for k in 1..total.len() {
            if total[k] > total[best] {
                (best, ties) = (k, 1);
            } else if total[k] == total[best] {
                ties += 1;
                if self.rng.random_range(0..ties) == 0 {
                    best = k;
                }
            }
        }
        feasible[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::podinfo::testing::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn web(name: &str, cpu: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]}}))
    }

    #[test]
    fn picks_the_emptiest_and_spreads() {
        let mut c = cache(&[
            node("n1", "4", json!({})),
            node("n2", "4", json!({})),
            node("n3", "4", json!({})),
        ]);
        let mut alg = Algorithm::new(Framework::default(), 0, 1);
        let mut used = std::collections::HashSet::new();
        for i in 0..3 {
            let p = web(&format!("p{i}"), "1");
            let n = alg.schedule(&c, &p).ok().unwrap();
            used.insert(n);
            c.assume(Arc::new(p), n);
        }
        assert_eq!(used.len(), 3, "least allocated spreads equal pods");
    }

    #[test]
    fn fit_error_lists_every_node() {
        let mut tainted = node("cp", "8", json!({}));
        tainted.spec = Some(
            serde_json::from_value(json!({"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}))
            .unwrap(),
        );
        let c = cache(&[
            tainted,
            node("n1", "1", json!({})),
            node("n2", "1", json!({})),
        ]);
        let mut alg = Algorithm::new(Framework::default(), 0, 1);
        match alg.schedule(&c, &web("big", "2")) {
            Err(Failure::Fit(e, _)) => assert_eq!(
                e.to_string(),
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
            ),
            _ => panic!("expected a fit error"),
        }
        assert!(matches!(
            alg.schedule(&cache(&[]), &web("x", "1")),
            Err(Failure::NoNodes)
        ));
    }

    #[test]
    fn stops_after_enough_feasible_nodes_and_rotates() {
        let nodes: Vec<_> = (0..1000)
            .map(|i| node(&format!("n{i:04}"), "4", json!({})))
            .collect();
        let c = cache(&nodes);
        let mut alg = Algorithm::new(Framework::default(), 0, 4);
        let first = alg.schedule(&c, &web("a", "1")).ok().unwrap();
        assert!(first < 420, "only the first 420 nodes are examined");
        assert_eq!(alg.next_start, 420);
        let second = alg.schedule(&c, &web("b", "1")).ok().unwrap();
        assert!((420..840).contains(&second));
    }
}
