//! DaemonSet (Kubernetes' `pkg/controller/daemon`): one pod on every eligible node.
//!
//! Each sync:
//! 1. builds the history ([`update::construct_history`]): the revision of the current
//!    template and its hash, which labels new pods;
//! 2. manages nodes: a node that should run a daemon pod and has none gets one, pinned
//!    to it by node affinity for the scheduler to bind; failed pods are deleted (with
//!    a per-node backoff), extra pods beyond one per node deleted, and pods on nodes
//!    that no longer qualify deleted;
//! 3. when nothing is in flight, does one step of a rolling update;
//! 4. trims old revisions and writes status.
//!
//! Creations and deletions are tracked with [`Expectations`], as in the ReplicaSet
//! controller, so a sync never acts on a cache that has not seen its last changes.

mod nodes;
mod update;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Patch, PatchParams, PostParams};
use keelson_component::{EventType, Queue, Requeue};
use serde_json::{json, Value};

use crate::common::owner::{
    claim, controller_of, controller_ref, owners_of, parse_selector, ClaimResult,
};
use crate::common::revisions::HASH_LABEL;
use crate::common::slowstart::slow_start;
use crate::common::{pods, Expectations};
use crate::Context;
use nodes::Placement;
use update::TEMPLATE_GENERATION_LABEL;

/// Most pods created or deleted in one sync.
const BURST: usize = 250;

pub async fn run(ctx: Context) {
    let set_informer = ctx.informers.get::<DaemonSet>();
    let pod_informer = ctx.informers.get::<Pod>();
    let node_informer = ctx.informers.get::<Node>();
    let revision_informer = ctx.informers.get::<ControllerRevision>();
    let queue: Queue<ObjectKey> = Queue::new("daemonset", &ctx.queue_metrics);
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        sets: set_informer.store(),
        pods: pod_informer.store(),
        nodes: node_informer.store(),
        revisions: revision_informer.store(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        queue: queue.clone(),
    });

    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    set_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |d: Arc<DaemonSet>| q1.add(d.key()))
            .on_update(move |_, d: Arc<DaemonSet>| q2.add(d.key()))
            .on_delete(move |d: Arc<DaemonSet>| q3.add(d.key())),
    );

    let (c1, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
    pod_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| {
                for key in c1.sets_of(&p) {
                    if p.metadata.deletion_timestamp.is_some() {
                        c1.expectations.deletion_observed(&key);
                    } else {
                        c1.expectations.creation_observed(&key);
                    }
                    c1.queue.add(key);
                }
            })
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if old.metadata.deletion_timestamp.is_none()
                    && new.metadata.deletion_timestamp.is_some()
                {
                    for key in c2.sets_of(&new) {
                        c2.expectations.deletion_observed(&key);
                    }
                }
                let mut keys = c2.sets_of(&old);
                keys.extend(c2.sets_of(&new));
                keys.dedup();
                keys.into_iter().for_each(|k| c2.queue.add(k));
            })
            .on_delete(move |p: Arc<Pod>| {
                for key in c3.sets_of(&p) {
                    if p.metadata.deletion_timestamp.is_none() {
                        c3.expectations.deletion_observed(&key);
                    }
                    c3.queue.add(key);
                }
            }),
    );

    // A node change matters to the DaemonSets whose verdict on it changes.
    let (c1, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
    node_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |n: Arc<Node>| {
                for ds in c1.sets.list() {
                    if Placement::new(&ds).should_run(&n).0 {
                        c1.queue.add(ds.key());
                    }
                }
            })
            .on_update(move |old: Arc<Node>, new: Arc<Node>| {
                if old.metadata.labels == new.metadata.labels && old.spec == new.spec {
                    return;
                }
                for ds in c2.sets.list() {
                    let placement = Placement::new(&ds);
                    if placement.should_run(&old) != placement.should_run(&new) {
                        c2.queue.add(ds.key());
                    }
                }
            })
            .on_delete(move |_: Arc<Node>| {
                c3.sets.list().iter().for_each(|d| c3.queue.add(d.key()))
            }),
    );

    // Someone else's change to our history.
    let c = controller.clone();
    let on_revision = move |r: Arc<ControllerRevision>| {
        if let Some(owner) = controller_of(&r.metadata).filter(|o| o.kind == "DaemonSet") {
            if let Some(ds) = c.sets.get_by_name(r.namespace(), &owner.name) {
                c.queue.add(ds.key());
            }
        }
    };
    let on_revision_update = {
        let f = on_revision.clone();
        move |_, r| f(r)
    };
    revision_informer.add_handler(
        HandlerFuncs::new()
            .on_update(on_revision_update)
            .on_delete(on_revision),
    );

    set_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    node_informer.wait_for_sync().await;
    revision_informer.wait_for_sync().await;
    let workers = ctx.options.concurrent_syncs;
    queue
        .run(workers, move |key| {
            let c = controller.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

struct Controller {
    ctx: Context,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    backoff: Backoff,
    queue: Queue<ObjectKey>,
}

fn selector_of(ds: &DaemonSet) -> Option<LabelSelector> {
    parse_selector(&ds.spec.as_ref()?.selector)
}

/// Oldest first, bound pods before unbound ones (`podByCreationTimestampAndPhase`).
fn by_age(a: &Arc<Pod>, b: &Arc<Pod>) -> std::cmp::Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn rolling(ds: &DaemonSet) -> bool {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

impl Controller {
    /// The sets a pod change concerns (see [`owners_of`]).
    fn sets_of(&self, pod: &Pod) -> Vec<ObjectKey> {
        owners_of(&self.sets, &pod.metadata, selector_of)
    }

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(ds) = self.sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(selector) = selector_of(&ds).filter(|s| !s.is_empty()) else {
            let msg = "This daemon set is selecting all pods. A non-empty selector is required.";
            self.event(&ds, EventType::Warning, "SelectingAll", msg)
                .await;
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = key.namespace.as_deref().unwrap_or_default();
        let client = self.ctx.client.clone();
        let revision_api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
        let pod_api: Api<Pod> = Api::namespaced(client, ns);
        let history =
            update::construct_history(&self.revisions, &revision_api, &ds, &selector).await?;

        // Our pods: claimed, and grouped by the node they are for.
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            if pods::is_terminal(&pod) && pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if claim(ds.as_ref(), &selector, pod.as_ref(), &pod_api).await? == ClaimResult::Owned {
                owned.push(pod);
            }
        }
        let mut node_pods: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in &owned {
            if let Some(node) = nodes::target_node(pod) {
                node_pods
                    .entry(node.to_string())
                    .or_default()
                    .push(pod.clone());
            }
        }
        for pods in node_pods.values_mut() {
            pods.sort_by(by_age);
        }
        let nodes = self.nodes.list();
        let placement = Placement::new(&ds);
        let now = jiff::Timestamp::now();

        let mut requeue: Requeue = None;
        let mut result = Ok(());
        // Until the cache has seen our last changes, status is written but the new
        // generation is not declared observed.
        let settled = self.expectations.satisfied(key);
        if settled {
            let (delete, create) = self
                .manage(
                    &ds,
                    &placement,
                    &nodes,
                    &node_pods,
                    &history.hash,
                    now,
                    &mut requeue,
                )
                .await;
            let changed = !delete.is_empty() || !create.is_empty();
            result = self
                .sync_nodes(&ds, &pod_api, delete, create, &history.hash)
                .await;
            // A rolling-update step only once every node has its pods sorted out.
            if result.is_ok() && !changed && rolling(&ds) {
                let eligible: Vec<String> = nodes
                    .iter()
                    .filter(|n| placement.should_run(n).0)
                    .map(|n| n.name().to_string())
                    .collect();
                let plan = update::rolling_update(&ds, &node_pods, &eligible, &history.hash, now);
                result = self
                    .sync_nodes(&ds, &pod_api, plan.delete, plan.create, &history.hash)
                    .await;
            }
            update::cleanup_history(&revision_api, &ds, &history, &owned).await?;
        }
        self.update_status(&ds, &placement, &nodes, &node_pods, &history, settled)
            .await?;
        result?;

        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let available_at = owned
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min()
            .map(|d| d + Duration::from_millis(100));
        Ok([requeue, available_at].into_iter().flatten().min())
    }

    /// Kubernetes' `podsShouldBeOnNode` for every node: the pods to delete and the
    /// nodes that need a pod.
    #[allow(clippy::too_many_arguments)]
    async fn manage(
        &self,
        ds: &DaemonSet,
        placement: &Placement,
        nodes: &[Arc<Node>],
        node_pods: &BTreeMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        now: jiff::Timestamp,
        requeue: &mut Requeue,
    ) -> (Vec<Arc<Pod>>, Vec<String>) {
        let surge = update::surge_and_unavailable(ds, 1).0 > 0;
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let (mut delete, mut create) = (Vec::new(), Vec::new());
        for node in nodes {
            let name = node.name();
            let (should_run, may_continue) = placement.should_run(node);
            let Some(pods) = node_pods.get(name) else {
                if should_run {
                    create.push(name.to_string());
                }
                continue;
            };
            if !may_continue {
                delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .cloned(),
                );
                continue;
            }
            let mut running = Vec::new();
            for pod in pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                match phase(pod) {
                    "Failed" => {
                        // Kubelets may reject a pod over and over: back off per node.
                        let id = format!("{}/{name}", ds.key());
                        if let Some(delay) = self.backoff.waiting(&id) {
                            *requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                            continue;
                        }
                        self.backoff.next(&id);
                        delete.push(pod.clone());
                    }
                    "Succeeded" => delete.push(pod.clone()),
                    _ => running.push(pod),
                }
            }
            if !surge {
                // One pod per node: the oldest stays.
                delete.extend(running.iter().skip(1).map(|p| (*p).clone()));
                continue;
            }
            // Surge: keep the oldest updated and the oldest old pod; the old one goes
            // once the updated one is available.
            let (mut new, mut old) = (None, None);
            for pod in running {
                let is_new = update::is_updated(pod, hash, ds.metadata.generation);
                let slot = if is_new { &mut new } else { &mut old };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    delete.push(pod.clone());
                }
            }
            if let (Some(new), Some(old)) = (new, old) {
                if pods::is_available(new, min_ready, now) {
                    delete.push(old.clone());
                }
            }
        }
        // Unbound pods for nodes that are gone (bound ones are the pod GC's).
        for (node, pods) in node_pods {
            if !nodes.iter().any(|n| n.name() == node) {
                let unbound = pods.iter().filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_none_or(str::is_empty)
                });
                delete.extend(unbound.cloned());
            }
        }
        for pod in &delete {
            if phase(pod) == "Failed" {
                let node = nodes::target_node(pod).unwrap_or_default();
                let msg = format!(
                    "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                    pod.namespace().unwrap_or_default(),
                    pod.name()
                );
                self.event(ds, EventType::Warning, "FailedDaemonPod", &msg)
                    .await;
            }
        }
        (delete, create)
    }

    /// Create pods on `create` and delete `delete`, at most [`BURST`] of each,
    /// expecting to observe every change.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        pod_api: &Api<Pod>,
        mut delete: Vec<Arc<Pod>>,
        mut create: Vec<String>,
        hash: &str,
    ) -> anyhow::Result<()> {
        if delete.is_empty() && create.is_empty() {
            return Ok(());
        }
        let key = ds.key();
        create.truncate(BURST);
        delete.truncate(BURST);
        self.expectations
            .expect(&key, create.len() as i64, delete.len() as i64);
        let template = pod_template(ds, hash);
        let ns = ds.namespace().unwrap_or_default();
        let prefix = pods::generate_name_prefix(ds.name());
        let owner = controller_ref(ds);

        // Slow start: a failing batch stops the creations (quota, admission).
        let outcome = slow_start(create.len(), |i| {
            let mut pod = pods::from_template(&template, ns, owner.clone(), &prefix, None);
            nodes::pin_to_node(pod.spec.get_or_insert_with(Default::default), &create[i]);
            async move { pod_api.create(&PostParams::default(), &pod).await }
        })
        .await;
        for pod in &outcome.created {
            let msg = format!("Created pod: {}", pod.name());
            self.event(ds, EventType::Normal, "SuccessfulCreate", &msg)
                .await;
        }
        let mut error = None;
        for e in outcome.errors {
            self.expectations.creation_observed(&key);
            let msg = format!("Error creating: {e}");
            self.event(ds, EventType::Warning, "FailedCreate", &msg)
                .await;
            error.get_or_insert(anyhow::Error::from(e));
        }
        for _ in 0..outcome.skipped {
            self.expectations.creation_observed(&key);
        }

        let results = futures::future::join_all(delete.iter().map(|p| async move {
            (
                pod_api.delete(p.name(), &DeleteParams::default()).await,
                p.name(),
            )
        }))
        .await;
        for (r, name) in results {
            match r {
                Ok(_) => {
                    let msg = format!("Deleted pod: {name}");
                    self.event(ds, EventType::Normal, "SuccessfulDelete", &msg)
                        .await;
                }
                Err(e) => {
                    self.expectations.deletion_observed(&key);
                    if !e.is_not_found() {
                        let msg = format!("Error deleting: {e}");
                        self.event(ds, EventType::Warning, "FailedDelete", &msg)
                            .await;
                        error.get_or_insert(anyhow::Error::from(e));
                    }
                }
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Kubernetes' `updateDaemonSetStatus`, from the oldest pod of each node.
    async fn update_status(
        &self,
        ds: &DaemonSet,
        placement: &Placement,
        nodes: &[Arc<Node>],
        node_pods: &BTreeMap<String, Vec<Arc<Pod>>>,
        history: &update::History,
        observe: bool,
    ) -> anyhow::Result<()> {
        let now = jiff::Timestamp::now();
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        for node in nodes {
            let oldest = node_pods.get(node.name()).and_then(|p| p.first());
            if !placement.should_run(node).0 {
                misscheduled += i32::from(oldest.is_some());
                continue;
            }
            desired += 1;
            let Some(pod) = oldest else {
                continue;
            };
            current += 1;
            if pods::is_ready(pod) {
                ready += 1;
                available += i32::from(pods::is_available(pod, min_ready, now));
            }
            updated += i32::from(update::is_updated(
                pod,
                &history.hash,
                ds.metadata.generation,
            ));
        }
        let mut want = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "updatedNumberScheduled": updated,
        });
        let observed = ds.status.as_ref().and_then(|s| s.observed_generation);
        let generation = if observe {
            ds.metadata.generation
        } else {
            observed
        };
        want["observedGeneration"] = json!(generation.unwrap_or(0));
        if history.collisions > 0 {
            want["collisionCount"] = json!(history.collisions);
        }
        let have = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
        let same = want.as_object().into_iter().flatten().all(|(k, v)| {
            let h = have.get(k).cloned().unwrap_or(Value::Null);
            h == *v || (h.is_null() && v == &json!(0))
        });
        if same {
            return Ok(());
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.ctx.client.clone(), ds.namespace().unwrap_or_default());
        match api
            .patch_status(
                ds.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": want})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, ds: &DaemonSet, kind: EventType, reason: &str, message: &str) {
        let reference = keelson_component::events::reference(ds);
        self.ctx
            .recorder
            .record(&reference, kind, reason, message)
            .await;
    }
}

/// The template of new pods: the DaemonSet's, labelled with the revision hash and the
/// generation, with the daemon tolerations.
fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.to_string());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    nodes::add_daemon_tolerations(t.spec.get_or_insert_with(Default::default));
    t
}

/// Per-node backoff for replacing failed pods: 1 s doubling to 15 min (client-go's
/// `flowcontrol.Backoff` as the DaemonSet controller uses it).
#[derive(Default)]
struct Backoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(900);

    /// The delay still to wait, if `id` failed within its current backoff.
    fn waiting(&self, id: &str) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (delay, at) = entries.get(id)?;
        (at.elapsed() < *delay).then(|| *delay - at.elapsed())
    }

    /// Record a failure: the next backoff doubles, or starts again after a quiet spell.
    fn next(&self, id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let delay = match entries.get(id) {
            Some((d, at)) if at.elapsed() <= 2 * Self::MAX => (*d * 2).min(Self::MAX),
            _ => Self::INITIAL,
        };
        entries.insert(id.to_string(), (delay, now));
    }
}
