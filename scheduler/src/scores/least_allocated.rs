//! NodeResourcesFit's default score, LeastAllocated: prefer nodes with more CPU and
//! memory left after placing the pod (equal weights; containers without requests count
//! as 100m and 200Mi).

use crate::framework::{Context, CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;

pub struct LeastAllocated;

fn least(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        0
    } else {
        (capacity - requested) * MAX_NODE_SCORE / capacity
    }
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> i64 {
        let alloc = &node.details().allocatable;
        let cpu = node.non_zero_requested.0 + cx.pod.non_zero.0;
        let mem = node.non_zero_requested.1 + cx.pod.non_zero.1;
        (least(cpu, alloc.milli_cpu) + least(mem, alloc.memory)) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::podinfo::testing::pod;
    use crate::scores::testing::scores;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn emptier_nodes_score_higher() {
        let mut c = cache(&[node("n1", "4", json!({})), node("n2", "4", json!({}))]);
        let p = |n: &str| {
            pod(json!({"metadata": {"name": n}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}]}}))
        };
        c.assume(Arc::new(p("a")), 0);
        // n1: cpu 4/4 used -> 0, memory 16/16 -> 0; n2: 2/4 -> 50, 8/16 -> 50.
        assert_eq!(scores(&LeastAllocated, &c, &p("b")).unwrap(), [0, 50]);
    }
}
