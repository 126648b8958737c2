//! [`SchedulerConfig`]: the knobs of kube-scheduler's configuration that this scheduler
//! has, with Kubernetes' defaults.

use std::time::Duration;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// Share of the nodes to find feasible before scoring; 0 adapts to the cluster
    /// size as Kubernetes does (50% minus 1% per 125 nodes, at least 5%, and never
    /// fewer than 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    /// Threads for filtering and scoring large node sets (work is split only when each
    /// thread gets at least a few hundred nodes).
    pub parallelism: usize,
    /// Bindings written concurrently while the next pods are scheduled.
    pub max_inflight_bindings: usize,
    /// Backoff of a pod's first retry, doubling per attempt up to the maximum.
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    /// An unschedulable pod is retried after this long even without a cluster event.
    pub max_unschedulable_duration: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            parallelism: 16,
            max_inflight_bindings: 128,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            max_unschedulable_duration: Duration::from_secs(60),
        }
    }
}

/// Below this many nodes every node is examined (`minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES: usize = 100;
/// The adaptive share never drops below this (`minFeasibleNodesPercentageToFind`).
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

/// `numFeasibleNodesToFind`: how many feasible nodes to find before scoring.
pub fn num_feasible_nodes_to_find(percentage: u32, nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES {
        return nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(nodes / 125)
            .max(MIN_FEASIBLE_PERCENTAGE);
    }
    if pct >= 100 {
        return nodes;
    }
    (nodes * pct / 100).max(MIN_FEASIBLE_NODES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_share_like_kubernetes() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300, "5% floor");
        assert_eq!(num_feasible_nodes_to_find(0, 10000), 500);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(100, 1000), 1000);
        assert_eq!(num_feasible_nodes_to_find(1, 1000), 100);
    }
}
