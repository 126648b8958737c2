//! The plugin framework, after kube-scheduler's: filters say whether a pod may run on a
//! node, scores rank the nodes that may. Each plugin is a small file in
//! [`crate::filters`] and [`crate::scores`]; [`Framework::default`] lists them in Kubernetes' default order
//! with Kubernetes' default score weights.

use std::any::{Any, TypeId};
use std::collections::HashMap;

use crate::cache::Cache;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::{filters, scores};

/// How a filter failure can be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Removing pods from the node could help (preemption may try).
    Unschedulable,
    /// Nothing done to pods on the node helps (a taint, a selector).
    UnschedulableAndUnresolvable,
}

/// A filter's verdict against one node: why the pod does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that failed, for requeueing on the events that can change its mind.
    pub plugin: &'static str,
}

impl Status {
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin,
        }
    }
}

/// What one scheduling attempt's plugins need to share between the pre-computation and
/// the per-node calls (the pod, the cluster).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub pod: &'a PodInfo,
    pub cache: &'a Cache,
}

trait StateData: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_box(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Per-attempt data plugins compute once (PreFilter, PreScore), one value per type.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<TypeId, Box<dyn StateData>>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
        }
    }
}

impl CycleState {
    pub fn insert<T: Any + Clone + Send + Sync>(&mut self, v: T) {
        self.data.insert(TypeId::of::<T>(), Box::new(v));
    }

    pub fn get<T: Any>(&self) -> Option<&T> {
        let b = self.data.get(&TypeId::of::<T>())?;
        (**b).as_any().downcast_ref()
    }

    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        let b = self.data.get_mut(&TypeId::of::<T>())?;
        (**b).as_any_mut().downcast_mut()
    }
}

/// A Filter plugin (with its optional PreFilter).
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Once per attempt, before any node. An error fails every node.
    fn pre_filter(&self, _cx: Context, _state: &mut CycleState) -> Result<(), Status> {
        Ok(())
    }

    fn filter(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> Result<(), Status>;

    /// Preemption's dry runs take `pod` off `node` (or put it back): plugins whose
    /// PreFilter counted pods adjust `state` (`delta` is -1 or +1).
    fn update_state(
        &self,
        _cx: Context,
        _state: &mut CycleState,
        _node: &NodeInfo,
        _pod: &PodInfo,
        _delta: i64,
    ) {
    }
}

/// A Score plugin: 0..=100 per node after normalization.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Kubernetes' default weight of the plugin.
    fn weight(&self) -> i64;

    /// Once per attempt over the feasible nodes; `false` skips the plugin (it then adds
    /// nothing to any node).
    fn pre_score(&self, _cx: Context, _state: &mut CycleState, _nodes: &[&NodeInfo]) -> bool {
        true
    }

    fn score(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> i64;

    /// Bring the raw scores (one per feasible node, in order) to 0..=100.
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// The highest normalized score (`framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// `DefaultNormalizeScore`: scale to 0..=100 by the maximum; `reverse` makes low raw
/// scores high.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// The filters and scores a scheduling attempt runs.
pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<Box<dyn ScorePlugin>>,
}

impl Default for Framework {
    fn default() -> Self {
        Framework {
            filters: filters::defaults(),
            scores: scores::defaults(),
        }
    }
}

/// A set of filter plugins, as bits (for requeueing pods on the events that matter).
pub type PluginSet = u64;

/// Every plugin: a pod that failed for an unknown reason moves on any event.
pub const ALL_PLUGINS: PluginSet = PluginSet::MAX;

impl Framework {
    pub fn pre_filter(&self, cx: Context, state: &mut CycleState) -> Result<(), Status> {
        for f in &self.filters {
            f.pre_filter(cx, state)?;
        }
        Ok(())
    }

    /// Every filter in order; the first failure decides.
    pub fn filter(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        for f in &self.filters {
            f.filter(cx, state, node)?;
        }
        Ok(())
    }

    /// Filters as if the pods nominated to the node with at least the pod's priority
    /// were already there (Kubernetes' `RunFilterPluginsWithNominatedPods`).
    pub fn filter_with_nominated(
        &self,
        cx: Context,
        state: &CycleState,
        node: &NodeInfo,
    ) -> Result<(), Status> {
        let mut ghosts = cx
            .cache
            .nominated_on(node.index)
            .filter(|p| p.uid != cx.pod.uid && p.priority >= cx.pod.priority)
            .peekable();
        if ghosts.peek().is_none() {
            return self.filter(cx, state, node);
        }
        let mut with = node.clone();
        let mut state = state.clone();
        for g in ghosts {
            self.update_state(cx, &mut state, &with, g, 1);
            with.add_pod(g.clone());
        }
        self.filter(cx, &state, &with)
    }

    pub fn update_state(
        &self,
        cx: Context,
        state: &mut CycleState,
        node: &NodeInfo,
        pod: &PodInfo,
        delta: i64,
    ) {
        for f in &self.filters {
            f.update_state(cx, state, node, pod, delta);
        }
    }

    /// The bit of a filter plugin.
    pub fn plugin_bit(&self, name: &str) -> PluginSet {
        self.filters
            .iter()
            .position(|f| f.name() == name)
            .map_or(0, |i| 1 << i)
    }

    /// The bits of several filter plugins.
    pub fn plugin_set(&self, names: &[&str]) -> PluginSet {
        names.iter().fold(0, |acc, n| acc | self.plugin_bit(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_state() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut z = vec![0, 0];
        default_normalize(&mut z, true);
        assert_eq!(z, [100, 100]);

        let mut st = CycleState::default();
        st.insert(5u32);
        let mut copy = st.clone();
        *copy.get_mut::<u32>().unwrap() = 6;
        assert_eq!(st.get::<u32>(), Some(&5));
        assert_eq!(copy.get::<u32>(), Some(&6));
        assert!(st.get::<i64>().is_none());
    }

    #[test]
    fn plugin_bits() {
        let fw = Framework::default();
        let fit = fw.plugin_bit("NodeResourcesFit");
        assert_ne!(fit, 0);
        assert_eq!(fw.plugin_set(&["NodeResourcesFit", "Nope"]), fit);
    }
}
