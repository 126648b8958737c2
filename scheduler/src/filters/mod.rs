//! Filter plugins, one per file, in the order Kubernetes runs its defaults (the first
//! failure decides a node's reason). Messages are Kubernetes' own.

mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_ready;
mod node_resources_fit;
mod node_unschedulable;
mod pod_topology_spread;
mod taint_toleration;

pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::{matches_node_selector_and_affinity, NodeAffinity};
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_ready::NodeReady;
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::{
    count_matching_pods, eligible as spread_eligible, PodTopologySpread,
};
pub use taint_toleration::TaintToleration;

use crate::framework::FilterPlugin;

/// Kubernetes' default filters, plus [`NodeReady`] for nodes that are not ready but not
/// (yet) tainted so.
pub fn defaults() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(NodeUnschedulable),
        Box::new(NodeName),
        Box::new(NodeReady),
        Box::new(TaintToleration),
        Box::new(NodeAffinity),
        Box::new(NodePorts),
        Box::new(NodeResourcesFit),
        Box::new(PodTopologySpread),
        Box::new(InterPodAffinity),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Run one filter against one node of a small cache.
    use crate::cache::Cache;
    use crate::framework::{Context, CycleState, FilterPlugin, Status};
    use crate::podinfo::PodInfo;

    pub fn run(
        f: &dyn FilterPlugin,
        cache: &Cache,
        pod: &PodInfo,
        node: usize,
    ) -> Result<(), Status> {
        let cx = Context { pod, cache };
        let mut state = CycleState::default();
        f.pre_filter(cx, &mut state)?;
        f.filter(cx, &state, cache.node(node))
    }

    /// The first reason, or "ok".
    pub fn reason(r: Result<(), Status>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(s) => s.reasons.join("; "),
        }
    }
}
