//! Preemption (the DefaultPreemption PostFilter): when a pod fits nowhere, find a node
//! where deleting pods of lower priority would make it fit.
//!
//! Only nodes that failed for a resolvable reason are tried. On each, every
//! lower-priority pod is taken off (a dry run on a copy of the node and of the cycle
//! state); if the pod then fits, the most important of them are put back one by one
//! while it still fits, and the rest are the victims. The best node has the
//! least important victims (lowest highest priority, then lowest sum, then fewest).
//! PodDisruptionBudgets are not considered.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;

use crate::cache::Cache;
use crate::fit_error::{Diagnosis, FitError};
use crate::framework::{Code, Context, CycleState, Framework, Status};
use crate::podinfo::PodInfo;

/// What preemption came to.
#[derive(Debug)]
pub enum Preemption {
    /// The pod may not preempt (now): the message; its nominated node stays.
    NotEligible(String),
    /// No node would do: the message; any nominated node is cleared.
    Failed(String),
    /// Delete `victims` from `node` (cache index); the pod waits for that room.
    Nominated {
        node: usize,
        victims: Vec<Arc<PodInfo>>,
    },
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Dry-run at least this many candidate nodes, or this share of them.
const MIN_CANDIDATES: usize = 100;
const MIN_CANDIDATES_PERCENTAGE: usize = 10;

fn failed(num_all_nodes: usize, statuses: HashMap<usize, Status>) -> Preemption {
    let e = FitError {
        num_all_nodes,
        diagnosis: Diagnosis {
            statuses,
            absent_reason: Some(NOT_HELPFUL.into()),
            ..Default::default()
        },
    };
    Preemption::Failed(e.to_string())
}

/// Try to make room for `pod`, which failed with `diagnosis`; `state` is the cycle
/// state after PreFilter.
pub fn preempt(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    state: &CycleState,
    diagnosis: &Diagnosis,
    rng: &mut impl Rng,
) -> Preemption {
    if pod.preempt_never {
        return Preemption::NotEligible("not eligible due to preemptionPolicy=Never.".into());
    }
    if let Some(i) = cache.node_index(&pod.nominated_node) {
        let resolvable = diagnosis
            .statuses
            .get(&i)
            .is_none_or(|s| s.code != Code::UnschedulableAndUnresolvable);
        let terminating = cache
            .node(i)
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority);
        if resolvable && terminating {
            return Preemption::NotEligible(
                "not eligible due to a terminating pod on the nominated node.".into(),
            );
        }
    }
    let all = cache.node_count();
    let mut potential: Vec<usize> = if diagnosis.pre_filter.is_some() {
        Vec::new()
    } else {
        diagnosis
            .statuses
            .iter()
            .filter(|(_, s)| s.code == Code::Unschedulable)
            .map(|(i, _)| *i)
            .collect()
    };
    if potential.is_empty() {
        return failed(all, HashMap::new());
    }
    potential.sort_unstable();
    let wanted = (potential.len() * MIN_CANDIDATES_PERCENTAGE / 100)
        .max(MIN_CANDIDATES)
        .min(potential.len());
    let offset = rng.random_range(0..potential.len());
    let mut candidates: Vec<(usize, Vec<Arc<PodInfo>>)> = Vec::new();
    let mut statuses = HashMap::new();
    for k in 0..potential.len() {
        let i = potential[(offset + k) % potential.len()];
        match select_victims(fw, cache, pod, state, i) {
            Ok(victims) => {
                candidates.push((i, victims));
                if candidates.len() >= wanted {
                    break;
                }
            }
            Err(s) => {
                statuses.insert(i, s);
            }
        }
    }
    let best = candidates.into_iter().min_by_key(|(i, victims)| {
        (
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
            victims.len(),
            *i,
        )
    });
    match best {
        Some((node, victims)) => Preemption::Nominated { node, victims },
        None => failed(all, statuses),
    }
}

/// The fewest, least important pods to delete from node `i` for `pod` to fit.
fn select_victims(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    state: &CycleState,
    i: usize,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let cx = Context { pod, cache };
    let mut potential: Vec<Arc<PodInfo>> = cache
        .node(i)
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(
            "DefaultPreemption",
            "No preemption victims found for incoming pod",
        ));
    }
    let mut node = cache.node(i).clone();
    let mut state = state.clone();
    for p in &potential {
        node.remove_pod(&p.uid);
        fw.update_state(cx, &mut state, &node, p, -1);
    }
    fw.filter_with_nominated(cx, &state, &node)?;
    // Most important first: they are the first to be spared.
    potential.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)));
    let mut victims = Vec::new();
    for p in potential {
        node.add_pod(p.clone());
        fw.update_state(cx, &mut state, &node, &p, 1);
        if fw.filter_with_nominated(cx, &state, &node).is_err() {
            node.remove_pod(&p.uid);
            fw.update_state(cx, &mut state, &node, &p, -1);
            victims.push(p);
        }
    }
    Ok(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{Algorithm, Failure};
    use crate::cache::testing::{cache, node};
    use crate::podinfo::testing::pod;
    use serde_json::json;

    fn asking(name: &str, cpu: &str, priority: i32) -> PodInfo {
        pod(
            json!({"metadata": {"name": name}, "spec": {"priority": priority, "containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    fn run(c: &Cache, p: &PodInfo) -> Preemption {
        let mut alg = Algorithm::new(Framework::default(), 0, 1);
        match alg.schedule(c, p) {
            Err(Failure::Fit(e, state)) => {
                let mut rng = rand::rng();
                preempt(&alg.framework, c, p, &state, &e.diagnosis, &mut rng)
            }
            _ => panic!("expected no fit"),
        }
    }

    #[test]
    fn fewest_lowest_priority_victims() {
        let mut c = cache(&[node("n1", "4", json!({})), node("n2", "4", json!({}))]);
        c.assume(Arc::new(asking("low-a", "2", 1)), 0);
        c.assume(Arc::new(asking("low-b", "2", 5)), 0);
        c.assume(Arc::new(asking("mid", "3", 50)), 1);
        match run(&c, &asking("high", "2", 100)) {
            Preemption::Nominated { node, victims } => {
                assert_eq!(node, 0);
                let names: Vec<&str> = victims.iter().map(|v| v.name.as_str()).collect();
                assert_eq!(names, ["low-a"], "one victim is enough; the lower one goes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let mut c = cache(&[
            node("n1", "1", json!({})),
            node("n2", "1", json!({"x": "y"})),
        ]);
        c.assume(Arc::new(asking("same", "1", 10)), 0);
        c.assume(Arc::new(asking("same2", "1", 10)), 1);
        let p = asking("p", "1", 10);
        match run(&c, &p) {
            Preemption::Failed(m) => assert_eq!(
                m,
                "0/2 nodes are available: 2 No preemption victims found for incoming pod."
            ),
            other => panic!("{other:?}"),
        }
        let huge = asking("huge", "8", 100);
        match run(&c, &huge) {
            Preemption::Failed(m) => assert_eq!(
                m,
                "0/2 nodes are available: 2 Preemption is not helpful for scheduling."
            ),
            other => panic!("{other:?}"),
        }
        let never = pod(
            json!({"spec": {"priority": 100, "preemptionPolicy": "Never", "containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        match run(&c, &never) {
            Preemption::NotEligible(m) => {
                assert_eq!(m, "not eligible due to preemptionPolicy=Never.")
            }
            other => panic!("{other:?}"),
        }
    }
}
