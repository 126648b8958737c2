//! Preemption (the DefaultPreemption PostFilter): when a pod fits nowhere, find a node
//! where deleting pods of lower priority would make it fit.
//!
//! Only nodes that failed for a resolvable reason are tried. On each, every
//! lower-priority pod is taken off (a dry run on a copy of the node and of the cycle
//! state); if the pod then fits, the most important of them are put back one by one
//! while it still fits, and the rest are the victims. PodDisruptionBudgets are
//! honoured as far as they can be (as Kubernetes does, best effort): pods whose
//! eviction would exceed their budget are put back first, and the best node is the
//! one with the fewest such violations, then the least important victims (lowest
//! highest priority, then lowest sum, then fewest).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_apimachinery::selector::LabelSelector;

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

/// What preemption needs of a PodDisruptionBudget.
#[derive(Debug, Clone)]
pub struct Budget {
    namespace: String,
    selector: LabelSelector,
    allowed: i32,
    /// Pods already evicted against it (the apiserver has spent the budget for them).
    disrupted: HashSet<String>,
}

impl Budget {
    /// `None` for a budget that selects nothing: no selector, an empty or an invalid
    /// one (the scheduler, unlike eviction, lets an empty selector match nothing).
    pub fn new(pdb: &PodDisruptionBudget) -> Option<Budget> {
        let selector = pdb.spec.as_ref()?.selector.as_ref()?;
        let selector = LabelSelector::from_object(&serde_json::to_value(selector).ok()?).ok()?;
        if selector.is_empty() {
            return None;
        }
        let status = pdb.status.clone().unwrap_or_default();
        Some(Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector,
            allowed: status.disruptions_allowed,
            disrupted: status
                .disrupted_pods
                .unwrap_or_default()
                .into_keys()
                .collect(),
        })
    }

    fn covers(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace
            && !pod.labels.is_empty()
            && !self.disrupted.contains(&pod.name)
            && self
                .selector
                .matches_with(|k| pod.labels.get(k).map(String::as_str))
    }
}

/// Split `pods` (in order) into those whose eviction would exceed a budget, counting
/// each earlier pod against the budgets it shares, and the rest.
fn split_by_budget(
    pods: Vec<Arc<PodInfo>>,
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violates = false;
        for (i, b) in budgets.iter().enumerate() {
            if b.covers(&pod) {
                allowed[i] -= 1;
                violates |= allowed[i] < 0;
            }
        }
        if violates {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
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
/// state after PreFilter; `budgets` are the cluster's PodDisruptionBudgets.
pub fn preempt(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    state: &CycleState,
    diagnosis: &Diagnosis,
    budgets: &[Budget],
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
    let mut candidates: Vec<(usize, Victims)> = Vec::new();
    let mut statuses = HashMap::new();
    for k in 0..potential.len() {
        let i = potential[(offset + k) % potential.len()];
        match select_victims(fw, cache, pod, state, budgets, i) {
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
    let best = candidates.into_iter().min_by_key(|(i, v)| {
        let victims = &v.pods;
        (
            v.violations,
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
            victims.len(),
            *i,
        )
    });
    match best {
        Some((node, v)) => Preemption::Nominated {
            node,
            victims: v.pods,
        },
        None => failed(all, statuses),
    }
}

/// The pods to delete from one node, and how many of them exceed their budget.
struct Victims {
    pods: Vec<Arc<PodInfo>>,
    violations: usize,
}

/// The fewest, least important pods to delete from node `i` for `pod` to fit, sparing
/// first those whose eviction would exceed their budget.
fn select_victims(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    state: &CycleState,
    budgets: &[Budget],
    i: usize,
) -> Result<Victims, Status> {
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
    // Most important first: they are the first to be spared, after the pods a
    // budget protects.
    potential.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)));
    let (violating, fine) = split_by_budget(potential, budgets);
    let mut victims = Victims {
        pods: Vec::new(),
        violations: 0,
    };
    for (p, protected) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(fine.into_iter().map(|p| (p, false)))
    {
        node.add_pod(p.clone());
        fw.update_state(cx, &mut state, &node, &p, 1);
        if fw.filter_with_nominated(cx, &state, &node).is_err() {
            node.remove_pod(&p.uid);
            fw.update_state(cx, &mut state, &node, &p, -1);
            victims.pods.push(p);
            victims.violations += usize::from(protected);
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
        run_with(c, p, &[])
    }

    fn run_with(c: &Cache, p: &PodInfo, budgets: &[Budget]) -> Preemption {
        let mut alg = Algorithm::new(Framework::default(), 0, 1);
        match alg.schedule(c, p) {
            Err(Failure::Fit(e, state)) => {
                let mut rng = rand::rng();
                preempt(
                    &alg.framework,
                    c,
                    p,
                    &state,
                    &e.diagnosis,
                    budgets,
                    &mut rng,
                )
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

    fn labelled(name: &str, cpu: &str, priority: i32, app: &str) -> Arc<PodInfo> {
        Arc::new(pod(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"priority": priority, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})))
    }

    fn budget(app: &str, allowed: i32) -> Budget {
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": app, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
        }))
        .unwrap();
        Budget::new(&pdb).unwrap()
    }

    fn victims(p: Preemption) -> (usize, Vec<String>) {
        match p {
            Preemption::Nominated { node, victims } => {
                (node, victims.iter().map(|v| v.name.clone()).collect())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn budgets_spare_the_pods_they_protect() {
        let mut c = cache(&[node("n1", "4", json!({}))]);
        c.assume(labelled("guarded", "2", 1, "db"), 0);
        c.assume(labelled("free", "2", 5, "web"), 0);
        let high = asking("high", "2", 100);
        assert_eq!(
            victims(run(&c, &high)).1,
            ["guarded"],
            "without budgets the lowest goes"
        );
        let spent = [budget("db", 0)];
        assert_eq!(victims(run_with(&c, &high, &spent)).1, ["free"]);
        // A budget with room left protects nothing.
        assert_eq!(
            victims(run_with(&c, &high, &[budget("db", 1)])).1,
            ["guarded"]
        );
        // An empty selector selects nothing here.
        assert!(Budget::new(
            &serde_json::from_value(json!({
            "metadata": {"name": "e", "namespace": "default"}, "spec": {"selector": {}}}))
            .unwrap()
        )
        .is_none());
    }

    #[test]
    fn the_node_with_fewest_budget_violations_wins() {
        let mut c = cache(&[node("n1", "2", json!({})), node("n2", "2", json!({}))]);
        c.assume(labelled("guarded", "2", 1, "db"), 0);
        c.assume(labelled("free", "2", 50, "web"), 1);
        let high = asking("high", "2", 100);
        // Lower priority on n1, but its only victim would exceed the budget.
        assert_eq!(victims(run(&c, &high)), (0, vec!["guarded".to_string()]));
        assert_eq!(
            victims(run_with(&c, &high, &[budget("db", 0)])),
            (1, vec!["free".to_string()])
        );
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
