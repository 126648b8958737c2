//! NodeResourcesBalancedAllocation: prefer nodes where CPU and memory would be used in
//! similar proportions after placing the pod (`(1 - std) * 100` of the two fractions).
//! Skipped for pods that request neither.

use crate::framework::{Context, CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;

pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn pre_score(&self, cx: Context, _: &mut CycleState, _: &[&NodeInfo]) -> bool {
        cx.pod.requests.milli_cpu > 0 || cx.pod.requests.memory > 0
    }

    fn score(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> i64 {
        let alloc = &node.details().allocatable;
        let fraction = |used: i64, want: i64, cap: i64| {
            (cap > 0).then(|| ((used + want) as f64 / cap as f64).min(1.0))
        };
        let cpu = fraction(
            node.requested.milli_cpu,
            cx.pod.requests.milli_cpu,
            alloc.milli_cpu,
        );
        let mem = fraction(node.requested.memory, cx.pod.requests.memory, alloc.memory);
        // With two resources the standard deviation is half their difference.
        let std = match (cpu, mem) {
            (Some(a), Some(b)) => (a - b).abs() / 2.0,
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
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
    fn balanced_use_scores_higher() {
        let c = cache(&[node("n1", "4", json!({})), node("n2", "16", json!({}))]);
        let p = pod(json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}]}}));
        // n1: cpu 0.5, memory 0.5 -> 100; n2: cpu 0.125, memory 0.5 -> 81.
        assert_eq!(scores(&BalancedAllocation, &c, &p).unwrap(), [100, 81]);
        assert!(scores(&BalancedAllocation, &c, &pod(json!({}))).is_none());
    }
}
