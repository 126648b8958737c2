//! Score plugins, one per file, with Kubernetes' default weights. Each scores a feasible
//! node 0..=100 after normalization; the scheduler adds them up, weighted.

mod balanced_allocation;
mod default_spread;
mod inter_pod_affinity;
mod least_allocated;
mod node_affinity;
mod pod_topology_spread;
mod taint_toleration;

pub use balanced_allocation::BalancedAllocation;
pub use default_spread::DefaultSpread;
pub use inter_pod_affinity::InterPodAffinity;
pub use least_allocated::LeastAllocated;
pub use node_affinity::NodeAffinity;
pub use pod_topology_spread::PodTopologySpread;
pub use taint_toleration::TaintToleration;

use crate::framework::ScorePlugin;

pub fn defaults() -> Vec<Box<dyn ScorePlugin>> {
    vec![
        Box::new(TaintToleration),
        Box::new(NodeAffinity),
        Box::new(PodTopologySpread),
        Box::new(DefaultSpread),
        Box::new(InterPodAffinity),
        Box::new(LeastAllocated),
        Box::new(BalancedAllocation),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Run one score plugin over every node of a small cache; normalized scores.
    use crate::cache::Cache;
    use crate::framework::{Context, CycleState, ScorePlugin};
    use crate::nodeinfo::NodeInfo;
    use crate::podinfo::PodInfo;

    pub fn scores(s: &dyn ScorePlugin, cache: &Cache, pod: &PodInfo) -> Option<Vec<i64>> {
        let cx = Context { pod, cache };
        let nodes: Vec<&NodeInfo> = cache.nodes().iter().filter(|n| n.node.is_some()).collect();
        let mut state = CycleState::default();
        if !s.pre_score(cx, &mut state, &nodes) {
            return None;
        }
        let mut out: Vec<i64> = nodes.iter().map(|n| s.score(cx, &state, n)).collect();
        s.normalize(&state, &mut out);
        Some(out)
    }
}
