//! Why a pod fits nowhere, worded as Kubernetes' `FitError.Error()`:
//!
//! `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.
//! preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.`
//!
//! Reasons are counted over nodes, printed as `<count> <reason>`, sorted as strings and
//! joined with ", "; a PreFilter failure replaces the per-node reasons; the PostFilter
//! (preemption) message follows.

use std::collections::HashMap;

use crate::framework::{PluginSet, Status};

/// Kubernetes' `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// The per-node verdicts of a failed attempt.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Node index -> why it was rejected.
    pub statuses: HashMap<usize, Status>,
    /// Set when a PreFilter rejected the pod for every node.
    pub pre_filter: Option<Status>,
    /// Reasons for nodes absent from `statuses` (preemption's "not helpful").
    pub absent_reason: Option<String>,
    /// The PostFilter (preemption) message.
    pub post_filter_msg: String,
}

impl Diagnosis {
    /// The filter plugins that rejected the pod somewhere.
    pub fn plugins(&self, bit: impl Fn(&str) -> PluginSet) -> PluginSet {
        let mut set = self.pre_filter.as_ref().map_or(0, |s| bit(s.plugin));
        for s in self.statuses.values() {
            set |= bit(s.plugin);
        }
        set
    }
}

/// No node fits the pod.
#[derive(Debug, Clone)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if let Some(pre) = &d.pre_filter {
            write!(f, " {}.", pre.reasons.join(", "))?;
        } else {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for s in d.statuses.values() {
                for r in &s.reasons {
                    *counts.entry(r.as_str()).or_default() += 1;
                }
            }
            let absent = self.num_all_nodes.saturating_sub(d.statuses.len());
            if let (Some(r), true) = (&d.absent_reason, absent > 0) {
                *counts.entry(r.as_str()).or_default() += absent;
            }
            let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            reasons.sort();
            if !reasons.is_empty() {
                write!(f, " {}.", reasons.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}", d.post_filter_msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_wording() {
        let mut d = Diagnosis::default();
        d.statuses.insert(
            0,
            Status::unresolvable(
                "TaintToleration",
                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
            ),
        );
        d.statuses.insert(
            1,
            Status::unschedulable("NodeResourcesFit", "Insufficient cpu"),
        );
        d.statuses.insert(
            2,
            Status::unschedulable("NodeResourcesFit", "Insufficient cpu"),
        );
        let preemption = FitError {
            num_all_nodes: 3,
            diagnosis: Diagnosis {
                absent_reason: Some("Preemption is not helpful for scheduling".into()),
                ..Default::default()
            },
        };
        d.post_filter_msg = format!("preemption: {preemption}");
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: d,
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn several_reasons_per_node_and_string_order() {
        let mut d = Diagnosis::default();
        for i in 0..12 {
            d.statuses.insert(
                i,
                Status {
                    code: crate::framework::Code::Unschedulable,
                    reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                    plugin: "NodeResourcesFit",
                },
            );
        }
        d.statuses.insert(
            12,
            Status::unresolvable(
                "NodeAffinity",
                "node(s) didn't match Pod's node affinity/selector",
            ),
        );
        let e = FitError {
            num_all_nodes: 13,
            diagnosis: d,
        };
        // Sorted as strings, as Go's sort.Strings does: "1 ..." before "12 ...".
        assert_eq!(
            e.to_string(),
            "0/13 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 12 Insufficient cpu, 12 Insufficient memory."
        );
    }

    #[test]
    fn pre_filter_and_not_eligible() {
        let e = FitError {
            num_all_nodes: 2,
            diagnosis: Diagnosis {
                pre_filter: Some(Status::unresolvable("X", "some prefilter reason")),
                post_filter_msg: "preemption: not eligible due to preemptionPolicy=Never.".into(),
                ..Default::default()
            },
        };
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: some prefilter reason. preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
