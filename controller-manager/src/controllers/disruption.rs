//! Disruption (Kubernetes' pkg/controller/disruption): keep every PodDisruptionBudget's
//! status true to its pods, so that `pods/eviction` can spend it.
//!
//! For each PDB: the pods its selector picks; how many should be healthy (an integer
//! `minAvailable` as is; a percentage, or `maxUnavailable`, against the summed scale of
//! the pods' controllers: Deployment, ReplicaSet, ReplicationController, StatefulSet);
//! how many are (ready, not being deleted, not just evicted); and so how many
//! disruptions are allowed. Evictions note the pods they delete in `disruptedPods`;
//! an entry stops counting when the pod's deletion shows, or after two minutes if it
//! never does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, ObjectKey, PostParams};
use keelson_component::events::{reference, EventType};
use keelson_component::{Queue, Requeue};

use crate::common::intstr::scaled_value;
use crate::common::owner::{controller_of, parse_selector};
use crate::common::pods::{is_ready, selects};
use crate::Context;

/// How long an eviction's entry in `disruptedPods` keeps the pod from counting as
/// healthy while its deletion has not shown (Kubernetes' DeletionTimeout).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

struct Controller {
    ctx: Context,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    replication_controllers: Store<ReplicationController>,
    stateful_sets: Store<StatefulSet>,
}

pub async fn run(ctx: Context) {
    let queue: Queue<ObjectKey> = Queue::new("disruption", &ctx.queue_metrics);
    let pdbs = ctx.informers.get::<PodDisruptionBudget>();
    let pods = ctx.informers.get::<Pod>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    pdbs.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<PodDisruptionBudget>| q1.add(p.key()))
            .on_update(move |_, p: Arc<PodDisruptionBudget>| q2.add(p.key()))
            .on_delete(move |p: Arc<PodDisruptionBudget>| q3.add(p.key())),
    );
    // A pod change concerns the budgets that pick it, before or after the change.
    let store = pdbs.store();
    let enqueue = move |queue: &Queue<ObjectKey>, pod: &Pod| {
        for key in budgets_picking(&store, pod) {
            queue.add(key);
        }
    };
    let (e1, e2, e3) = (enqueue.clone(), enqueue.clone(), enqueue);
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    pods.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| e1(&q1, &p))
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| {
                e2(&q2, &old);
                e2(&q2, &new);
            })
            .on_delete(move |p: Arc<Pod>| e3(&q3, &p)),
    );
    let c = Arc::new(Controller {
        pdbs: pdbs.store(),
        pods: pods.store(),
        replica_sets: ctx.informers.get::<ReplicaSet>().store(),
        deployments: ctx.informers.get::<Deployment>().store(),
        replication_controllers: ctx.informers.get::<ReplicationController>().store(),
        stateful_sets: ctx.informers.get::<StatefulSet>().store(),
        ctx: ctx.clone(),
    });
    pdbs.wait_for_sync().await;
    pods.wait_for_sync().await;
    ctx.informers.wait_for_sync::<ReplicaSet>().await;
    ctx.informers.wait_for_sync::<Deployment>().await;
    ctx.informers.wait_for_sync::<ReplicationController>().await;
    ctx.informers.wait_for_sync::<StatefulSet>().await;
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

/// The budgets in the pod's namespace whose selector picks it (an empty selector picks
/// every pod, a missing one none).
fn budgets_picking(pdbs: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<ObjectKey> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    pdbs.list_namespace(ns)
        .into_iter()
        .filter(|pdb| picks(pdb, pod))
        .map(|pdb| pdb.key())
        .collect()
}

fn picks(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    selector
        .and_then(parse_selector)
        .is_some_and(|s| selects(&s, &pod.metadata))
}

/// What the budget should say, before comparing it with what it says.
struct Computed {
    expected: i32,
    desired: i32,
    healthy: i32,
    disrupted: BTreeMap<String, Time>,
    recheck: Option<Duration>,
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(pdb) = self.pdbs.get(key) else {
            return Ok(None);
        };
        let ns = key.namespace.as_deref().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| picks(&pdb, p))
            .collect();
        if pods.is_empty() {
            self.event(&pdb, EventType::Normal, "NoPods", "No matching pods found")
                .await;
        }
        let (expected, desired, unmanaged) = match self.expected_pods(&pdb, &pods) {
            Ok(counts) => counts,
            Err(e) => {
                let msg = format!("Failed to calculate the number of expected pods: {e}");
                self.event(
                    &pdb,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    &msg,
                )
                .await;
                self.fail_safe(&pdb, &e.to_string()).await?;
                return Err(e);
            }
        };
        if unmanaged {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            let msg = format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                keelson_resources::podspec::go_label_selector(
                    serde_json::to_value(selector).ok().as_ref()
                )
            );
            self.event(&pdb, EventType::Warning, "UnmanagedPods", &msg)
                .await;
        }
        let now = Timestamp::now();
        let (disrupted, recheck) = disrupted_pods(&pdb, &pods, now);
        let healthy = count_healthy(&pods, &disrupted, now);
        let computed = Computed {
            expected,
            desired,
            healthy,
            disrupted,
            recheck,
        };
        self.write_status(&pdb, computed.status(&pdb)).await?;
        Ok(computed.recheck)
    }

    /// `(expectedPods, desiredHealthy, whether some picked pod has no controller)`.
    fn expected_pods(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
    ) -> anyhow::Result<(i32, i32, bool)> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max) = &spec.max_unavailable {
            let (expected, unmanaged) = self.expected_scale(pods)?;
            let max = scaled_value(max, expected, true)?;
            return Ok((expected, (expected - max).max(0), unmanaged));
        }
        match &spec.min_available {
            Some(IntOrString::Int(min)) => Ok((pods.len() as i32, *min, false)),
            Some(min) => {
                let (expected, unmanaged) = self.expected_scale(pods)?;
                Ok((expected, scaled_value(min, expected, true)?, unmanaged))
            }
            None => Ok((0, 0, false)),
        }
    }

    /// The summed scale of the controllers of `pods`, each counted once; also whether
    /// some pod has no controller (it adds nothing).
    fn expected_scale(&self, pods: &[Arc<Pod>]) -> anyhow::Result<(i32, bool)> {
        // By the uid of the object whose scale counts: a Deployment's ReplicaSets all
        // map to the Deployment.
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut owners = HashSet::new();
        let mut unmanaged = false;
        for pod in pods {
            let Some(owner) = controller_of(&pod.metadata) else {
                unmanaged = true;
                continue;
            };
            if !owners.insert(owner.uid.as_str()) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let (uid, scale) = self.scale_of(ns, owner).ok_or_else(|| {
                anyhow::anyhow!(
                    "found no controllers for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                )
            })?;
            scales.insert(uid, scale);
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The controller that sets a pod's scale and that scale: a ReplicaSet's
    /// Deployment when it has one, else the owner itself when it is a ReplicaSet,
    /// ReplicationController or StatefulSet (uid checked against the reference).
    fn scale_of(&self, ns: &str, owner: &OwnerReference) -> Option<(String, i32)> {
        fn matching<K: KubeObject>(
            store: &Store<K>,
            ns: &str,
            r: &OwnerReference,
        ) -> Option<Arc<K>> {
            store
                .get_by_name(Some(ns), &r.name)
                .filter(|o| o.uid() == Some(r.uid.as_str()))
        }
        match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => {
                let rs = matching(&self.replica_sets, ns, owner)?;
                if let Some(d) = controller_of(&rs.metadata).filter(|d| d.kind == "Deployment") {
                    let d = matching(&self.deployments, ns, d)?;
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((d.uid()?.to_string(), replicas));
                }
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((owner.uid.clone(), replicas))
            }
            ("v1", "ReplicationController") => {
                let rc = matching(&self.replication_controllers, ns, owner)?;
                Some((
                    owner.uid.clone(),
                    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            ("apps/v1", "StatefulSet") => {
                let sts = matching(&self.stateful_sets, ns, owner)?;
                Some((
                    owner.uid.clone(),
                    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            _ => None,
        }
    }

    /// Nothing may be disrupted while the budget cannot be computed ("fail closed").
    async fn fail_safe(&self, pdb: &PodDisruptionBudget, why: &str) -> anyhow::Result<()> {
        let mut status = pdb.status.clone().unwrap_or_default();
        status.disruptions_allowed = 0;
        let observed = status.observed_generation;
        set_condition(&mut status, false, "SyncFailed", why, observed);
        self.write_status(pdb, status).await
    }

    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> anyhow::Result<()> {
        if pdb.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut new = pdb.clone();
        new.status = Some(status);
        let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), ns);
        // The cached resourceVersion makes this a compare-and-swap: an eviction that
        // spent the budget meanwhile wins, and the sync runs again on its change.
        match api
            .replace_status(
                pdb.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &new,
            )
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }

    async fn event(&self, pdb: &PodDisruptionBudget, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(&reference(pdb), kind, reason, message)
            .await;
    }
}

impl Computed {
    fn status(&self, pdb: &PodDisruptionBudget) -> PodDisruptionBudgetStatus {
        // No disruption while the budget selects nothing: its first pods may appear
        // before the next sync.
        let allowed = if self.expected <= 0 {
            0
        } else {
            (self.healthy - self.desired).max(0)
        };
        let observed = pdb.metadata.generation;
        let mut status = PodDisruptionBudgetStatus {
            conditions: pdb.status.as_ref().and_then(|s| s.conditions.clone()),
            current_healthy: self.healthy,
            desired_healthy: self.desired,
            expected_pods: self.expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!self.disrupted.is_empty()).then(|| self.disrupted.clone()),
            observed_generation: observed,
        };
        let (ok, reason) = if allowed > 0 {
            (true, "SufficientPods")
        } else {
            (false, "InsufficientPods")
        };
        set_condition(&mut status, ok, reason, "", observed);
        status
    }
}

/// Entries of `disruptedPods` that still hold: the pod exists, is not yet being
/// deleted, and was evicted less than [`DELETION_TIMEOUT`] ago; and when the oldest
/// of them runs out.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Duration>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    let Some(noted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, None);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(at) = noted.get(name) else { continue };
        let expires = at.0 + DELETION_TIMEOUT;
        if expires > now {
            let left = Duration::try_from(expires - now).unwrap_or_default();
            recheck = Some(recheck.map_or(left, |r| r.min(left)));
            kept.insert(name.to_string(), at.clone());
        }
    }
    (kept, recheck)
}

/// Ready pods that are neither being deleted nor recently evicted.
fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            disrupted
                .get(name)
                .is_none_or(|at| at.0 + DELETION_TIMEOUT <= now)
        })
        .filter(|p| is_ready(p))
        .count() as i32
}

/// `meta.SetStatusCondition` for the `DisruptionAllowed` condition.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    allowed: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
) {
    let want = if allowed { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let old = conditions
        .iter()
        .position(|c| c.type_ == "DisruptionAllowed");
    let since = match old.map(|i| &conditions[i]) {
        Some(c) if c.status == want => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let cond = Condition {
        type_: "DisruptionAllowed".into(),
        status: want.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation,
        last_transition_time: since,
    };
    match old {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn evicted_and_deleting_pods_are_not_healthy() {
        let now = Timestamp::now();
        let pods = vec![
            pod("a", true, false),
            pod("b", true, false),
            pod("c", true, true),
            pod("d", false, false),
        ];
        let pdb = PodDisruptionBudget {
            status: Some(PodDisruptionBudgetStatus {
                disrupted_pods: Some(BTreeMap::from([
                    ("b".to_string(), Time(now)),
                    ("c".to_string(), Time(now)),
                    ("gone".to_string(), Time(now)),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kept, recheck) = disrupted_pods(&pdb, &pods, now);
        // "c" is being deleted and "gone" no longer exists: only "b" still counts.
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["b"]);
        assert!(recheck.is_some_and(|d| d <= DELETION_TIMEOUT));
        assert_eq!(count_healthy(&pods, &kept, now), 1);
        // Two minutes on, the entry has run out and "b" counts again.
        let later = now + DELETION_TIMEOUT + Duration::from_secs(1);
        assert_eq!(disrupted_pods(&pdb, &pods, later).0.len(), 0);
        assert_eq!(count_healthy(&pods, &BTreeMap::new(), later), 2);
    }

    #[test]
    fn status_allows_the_surplus_and_keeps_transition_times() {
        let pdb = PodDisruptionBudget {
            metadata: ObjectMeta {
                generation: Some(3),
                ..Default::default()
            },
            ..Default::default()
        };
        let computed = Computed {
            expected: 3,
            desired: 2,
            healthy: 3,
            disrupted: BTreeMap::new(),
            recheck: None,
        };
        let s = computed.status(&pdb);
        assert_eq!((s.disruptions_allowed, s.observed_generation), (1, Some(3)));
        let cond = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "SufficientPods")
        );
        let none = Computed {
            expected: 0,
            healthy: 5,
            desired: 0,
            ..computed
        };
        let s = none.status(&pdb);
        assert_eq!(
            s.disruptions_allowed, 0,
            "nothing expected, nothing allowed"
        );
        assert_eq!(s.conditions.unwrap()[0].reason, "InsufficientPods");
    }
}
