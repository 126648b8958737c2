//! Node lifecycle: node health from heartbeats, taints from node conditions, and
//! taint-based eviction.
//!
//! - Every `--node-monitor-period`, a node whose kubelet has not renewed its Lease
//!   (`kube-node-lease/<node>`) or posted a Ready heartbeat for
//!   `--node-monitor-grace-period` gets its Ready, MemoryPressure, DiskPressure and
//!   PIDPressure conditions set to Unknown. Heartbeats are timed by when this controller
//!   sees them change, not by their timestamps, so clock skew does not matter.
//! - The same pass keeps the NoExecute taints: `node.kubernetes.io/unreachable` while
//!   Ready is Unknown, `node.kubernetes.io/not-ready` while it is False, none when True.
//!   As in Kubernetes, a zone with no Ready node at all gets no new NoExecute taints
//!   (the control plane, not every node, is likely the one cut off), and when every
//!   zone is in that state the taints are removed. Pods on a node that stops being
//!   Ready are marked not ready.
//! - On every node change, NoSchedule taints follow the conditions (not-ready,
//!   unreachable, memory/disk/pid-pressure, network-unavailable) and
//!   `spec.unschedulable`.
//! - Taint eviction: a pod on a node with NoExecute taints it does not tolerate is
//!   deleted at once; one whose tolerations have `tolerationSeconds` is deleted that
//!   long after this controller first saw it exposed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Patch, PatchParams};
use keelson_component::{EventType, Queue, Requeue};
use serde_json::json;

use crate::common::pods;
use crate::common::taints::{same_taint, update_node_taints};
use crate::Context;
use keelson_component::scheduling::matching_tolerations;

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The conditions set to Unknown when the kubelet goes silent (NetworkUnavailable is
/// the network plugin's, not the kubelet's).
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What this controller last saw of a node's heartbeats.
struct Health {
    /// When a heartbeat (Lease renewal or Ready heartbeat) was last seen to change.
    probe: Instant,
    heartbeat: Option<Time>,
    renew: Option<MicroTime>,
    /// The Ready status seen in the last monitor pass.
    ready: Option<String>,
    /// Pods were marked not ready since Ready stopped being True.
    pods_marked: bool,
}

struct Controller {
    ctx: Context,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    /// When each exposed pod's eviction clock started.
    exposed: Mutex<HashMap<ObjectKey, Instant>>,
}

fn no_execute(node: &Node) -> Vec<&Taint> {
    node.spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

pub async fn run(ctx: Context) {
    let node_informer = ctx.informers.get::<Node>();
    let pod_informer = ctx.informers.get::<Pod>();
    let lease_informer = ctx.informers.get::<Lease>();
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        nodes: node_informer.store(),
        leases: lease_informer.store(),
        pods: pod_informer.store(),
        health: Mutex::default(),
        exposed: Mutex::default(),
    });
    let taint_queue: Queue<ObjectKey> = Queue::new("node_lifecycle_taints", &ctx.queue_metrics);
    let evictions: Queue<ObjectKey> = Queue::new("taint_eviction", &ctx.queue_metrics);

    let (tq1, tq2) = (taint_queue.clone(), taint_queue.clone());
    let (eq1, eq2) = (evictions.clone(), evictions.clone());
    let (c1, c2) = (c.clone(), c.clone());
    node_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |n: Arc<Node>| {
                tq1.add(n.key());
                if !no_execute(&n).is_empty() {
                    c1.enqueue_pods_on(n.name(), &eq1);
                }
            })
            .on_update(move |old: Arc<Node>, new: Arc<Node>| {
                tq2.add(new.key());
                if no_execute(&old) != no_execute(&new) {
                    c2.enqueue_pods_on(new.name(), &eq2);
                }
            }),
    );
    let (eq1, eq2) = (evictions.clone(), evictions.clone());
    let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
    pod_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| c1.maybe_enqueue_pod(&p, &eq1))
            .on_update(move |_, p: Arc<Pod>| c2.maybe_enqueue_pod(&p, &eq2))
            .on_delete(move |p: Arc<Pod>| {
                c3.lock_exposed().remove(&p.key());
            }),
    );
    node_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    lease_informer.wait_for_sync().await;

    let workers = ctx.options.concurrent_syncs;
    let (ct, ce, cm) = (c.clone(), c.clone(), c);
    let taints = taint_queue.run(workers, move |key| {
        let c = ct.clone();
        async move { c.sync_no_schedule(&key).await }
    });
    let evict = evictions.run(workers, move |key| {
        let c = ce.clone();
        async move { c.sync_eviction(&key).await }
    });
    let monitor = async move {
        let mut tick = tokio::time::interval(ctx.options.node_monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            cm.monitor().await;
        }
    };
    tokio::join!(taints, evict, monitor);
}

impl Controller {
    fn lock_exposed(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Instant>> {
        self.exposed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|p| node_of(p) == Some(node))
            .collect()
    }

    fn enqueue_pods_on(&self, node: &str, queue: &Queue<ObjectKey>) {
        for p in self.pods_on(node) {
            queue.add(p.key());
        }
    }

    /// A pod change matters to eviction only on a node with NoExecute taints, or when
    /// its eviction clock runs.
    fn maybe_enqueue_pod(&self, pod: &Pod, queue: &Queue<ObjectKey>) {
        let tainted = node_of(pod)
            .and_then(|n| self.nodes.get_by_name(None, n))
            .is_some_and(|n| !no_execute(&n).is_empty());
        if tainted || self.lock_exposed().contains_key(&pod.key()) {
            queue.add(pod.key());
        }
    }

    /// One monitor pass: health of every node, then zone states, then NoExecute taints
    /// and pod readiness from the updated health.
    async fn monitor(&self) {
        let mut checked = Vec::new();
        for node in self.nodes.list() {
            let (node, ready) = self.update_health(&node).await;
            checked.push((node, ready));
        }
        let names: std::collections::HashSet<&str> =
            checked.iter().map(|(n, _)| n.name()).collect();
        self.lock_health()
            .retain(|name, _| names.contains(name.as_str()));

        // Per zone: (ready, not ready) nodes.
        let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (node, ready) in &checked {
            let zone = node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL).cloned())
                .unwrap_or_default();
            let counts = zones.entry(zone).or_default();
            if ready.as_deref() == Some("True") {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        let fully_disrupted = |zone: &str| zones.get(zone).is_some_and(|(r, n)| *r == 0 && *n > 0);
        let all_disrupted = !zones.is_empty() && zones.keys().all(|z| fully_disrupted(z));

        for (node, ready) in checked {
            let zone = node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL).cloned())
                .unwrap_or_default();
            if let Err(e) = self
                .sync_no_execute(
                    &node,
                    ready.as_deref(),
                    fully_disrupted(&zone),
                    all_disrupted,
                )
                .await
            {
                tracing::warn!(node = node.name(), error = %e, "updating NoExecute taints");
            }
            self.after_ready_change(&node, ready.as_deref()).await;
        }
    }

    /// Refresh the node's heartbeat time from its Lease and Ready condition; when it is
    /// older than the grace period, set the kubelet's conditions to Unknown. Returns the
    /// node as it now is and its Ready status.
    async fn update_health(&self, node: &Node) -> (Node, Option<String>) {
        let name = node.name().to_string();
        let ready = condition(node, "Ready");
        let heartbeat = ready.and_then(|c| c.last_heartbeat_time.clone());
        let renew = self
            .leases
            .get_by_name(Some(LEASE_NAMESPACE), &name)
            .and_then(|l| l.spec.as_ref()?.renew_time.clone());
        let now = Instant::now();
        let silent = {
            let mut health = self.lock_health();
            let h = health.entry(name.clone()).or_insert_with(|| Health {
                probe: now,
                heartbeat: heartbeat.clone(),
                renew: renew.clone(),
                ready: ready.map(|c| c.status.clone()),
                pods_marked: false,
            });
            if heartbeat != h.heartbeat {
                h.heartbeat = heartbeat;
                h.probe = now;
            }
            if renew > h.renew {
                h.renew = renew;
                h.probe = now;
            }
            now.duration_since(h.probe) > self.ctx.options.node_monitor_grace_period
        };
        let current = ready.map(|c| c.status.clone());
        if !silent {
            return (node.clone(), current);
        }

        let stamp = Time(jiff::Timestamp::now());
        let mut conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut changed = false;
        for type_ in KUBELET_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                None => {
                    conditions.push(NodeCondition {
                        type_: type_.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(stamp.clone()),
                    });
                    changed = true;
                }
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(stamp.clone());
                    changed = true;
                }
                Some(_) => {}
            }
        }
        if !changed {
            return (node.clone(), current);
        }
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "status": {"conditions": conditions},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(updated) => (updated, Some("Unknown".into())),
            Err(e) => {
                // A conflict means the kubelet just wrote: look again next pass.
                tracing::debug!(node = %name, error = %e, "marking node status unknown");
                (node.clone(), current)
            }
        }
    }

    /// Keep the NoExecute not-ready/unreachable taint in line with Ready.
    async fn sync_no_execute(
        &self,
        node: &Node,
        ready: Option<&str>,
        zone_disrupted: bool,
        all_disrupted: bool,
    ) -> keelson_client::Result<()> {
        let mut want = match ready {
            Some("False") => Some(NOT_READY_TAINT),
            Some("Unknown") => Some(UNREACHABLE_TAINT),
            Some(_) => None,
            // Never posted a status and still within its grace period.
            None => return Ok(()),
        };
        if all_disrupted {
            want = None;
        }
        let has = |key: &str| no_execute(node).iter().any(|t| t.key == key);
        if zone_disrupted && !all_disrupted && want.is_some_and(|w| !has(w)) {
            // Kubernetes stops tainting in a zone where no node is Ready.
            return Ok(());
        }
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        update_node_taints(&api, node, |taints| {
            let before = taints.len();
            taints.retain(|t| {
                t.effect != "NoExecute"
                    || !(t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT)
                    || Some(t.key.as_str()) == want
            });
            let mut changed = taints.len() != before;
            if let Some(key) = want {
                if !taints
                    .iter()
                    .any(|t| t.key == key && t.effect == "NoExecute")
                {
                    taints.push(Taint {
                        key: key.into(),
                        value: None,
                        effect: "NoExecute".into(),
                        time_added: Some(Time(jiff::Timestamp::now())),
                    });
                    changed = true;
                }
            }
            changed
        })
        .await
    }

    /// Events on Ready transitions, and pods marked not ready once Ready is not True.
    async fn after_ready_change(&self, node: &Node, ready: Option<&str>) {
        let name = node.name().to_string();
        let (previous, marked) = {
            let mut health = self.lock_health();
            let Some(h) = health.get_mut(&name) else {
                return;
            };
            let previous = std::mem::replace(&mut h.ready, ready.map(String::from));
            if ready == Some("True") {
                h.pods_marked = false;
            }
            (previous, h.pods_marked)
        };
        let reference = keelson_component::events::reference(node);
        if previous.as_deref() == Some("True") && ready != Some("True") {
            let message = format!("Node {name} status is now: NodeNotReady");
            self.ctx
                .recorder
                .record(&reference, EventType::Normal, "NodeNotReady", &message)
                .await;
        }
        if previous.as_deref() != Some("True") && ready == Some("True") && previous.is_some() {
            let message = format!("Node {name} status is now: NodeReady");
            self.ctx
                .recorder
                .record(&reference, EventType::Normal, "NodeReady", &message)
                .await;
        }
        if ready.is_some_and(|r| r != "True") && !marked && self.mark_pods_not_ready(&name).await {
            if let Some(h) = self.lock_health().get_mut(&name) {
                h.pods_marked = true;
            }
        }
    }

    /// Kubernetes' `MarkPodsNotReady`: the Ready condition of every pod on the node
    /// becomes False. Returns whether every pod was updated.
    async fn mark_pods_not_ready(&self, node: &str) -> bool {
        let mut ok = true;
        for pod in self.pods_on(node) {
            if pods::is_terminal(&pod) {
                continue;
            }
            let mut conditions: Vec<PodCondition> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(jiff::Timestamp::now()));
            let api: Api<Pod> =
                Api::namespaced(self.ctx.client.clone(), pod.namespace().unwrap_or_default());
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(pod.name(), &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    self.ctx
                        .recorder
                        .record(
                            &keelson_component::events::reference(pod.as_ref()),
                            EventType::Warning,
                            "NodeNotReady",
                            "Node is not ready",
                        )
                        .await
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::debug!(pod = pod.name(), error = %e, "marking pod not ready");
                    ok = false;
                }
            }
        }
        ok
    }

    /// NoSchedule taints from the node's conditions and `spec.unschedulable`.
    async fn sync_no_schedule(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(node) = self.nodes.get(key) else {
            return Ok(None);
        };
        let mut want: Vec<&str> = Vec::new();
        for c in node
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
        {
            let key = match (c.type_.as_str(), c.status.as_str()) {
                ("Ready", "False") => NOT_READY_TAINT,
                ("Ready", "Unknown") => UNREACHABLE_TAINT,
                ("MemoryPressure", "True") => "node.kubernetes.io/memory-pressure",
                ("DiskPressure", "True") => "node.kubernetes.io/disk-pressure",
                ("PIDPressure", "True") => "node.kubernetes.io/pid-pressure",
                ("NetworkUnavailable", "True") => "node.kubernetes.io/network-unavailable",
                _ => continue,
            };
            want.push(key);
        }
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            want.push("node.kubernetes.io/unschedulable");
        }
        const MANAGED: [&str; 7] = [
            NOT_READY_TAINT,
            UNREACHABLE_TAINT,
            "node.kubernetes.io/memory-pressure",
            "node.kubernetes.io/disk-pressure",
            "node.kubernetes.io/pid-pressure",
            "node.kubernetes.io/network-unavailable",
            "node.kubernetes.io/unschedulable",
        ];
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        update_node_taints(&api, &node, |taints| {
            let before = taints.len();
            taints.retain(|t| {
                t.effect != "NoSchedule"
                    || !MANAGED.contains(&t.key.as_str())
                    || want.contains(&t.key.as_str())
            });
            let mut changed = taints.len() != before;
            for key in &want {
                let taint = Taint {
                    key: key.to_string(),
                    value: None,
                    effect: "NoSchedule".into(),
                    time_added: None,
                };
                if !taints.iter().any(|t| same_taint(t, &taint)) {
                    taints.push(taint);
                    changed = true;
                }
            }
            changed
        })
        .await?;
        Ok(None)
    }

    /// Taint eviction of one pod: now, later, or never.
    async fn sync_eviction(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let pod = self.pods.get(key);
        let node = pod
            .as_ref()
            .and_then(|p| node_of(p))
            .and_then(|n| self.nodes.get_by_name(None, n));
        let (Some(pod), Some(node)) = (pod, node) else {
            self.lock_exposed().remove(key);
            return Ok(None);
        };
        let taints = no_execute(&node);
        if taints.is_empty() || pod.metadata.deletion_timestamp.is_some() {
            self.lock_exposed().remove(key);
            return Ok(None);
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let wait = match matching_tolerations(&taints, &tolerations) {
            None => Duration::ZERO,
            Some(used) => {
                let seconds = used.iter().filter_map(|t| t.toleration_seconds).min();
                match seconds {
                    // Tolerated for ever.
                    None => {
                        self.lock_exposed().remove(key);
                        return Ok(None);
                    }
                    Some(s) => Duration::from_secs(s.max(0) as u64),
                }
            }
        };
        let started = *self
            .lock_exposed()
            .entry(key.clone())
            .or_insert_with(Instant::now);
        let elapsed = started.elapsed();
        if elapsed < wait {
            return Ok(Some(wait - elapsed));
        }
        self.evict(&pod).await?;
        self.lock_exposed().remove(key);
        Ok(None)
    }

    async fn evict(&self, pod: &Pod) -> anyhow::Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        self.ctx
            .recorder
            .record(
                &keelson_component::events::reference(pod),
                EventType::Normal,
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {ns}/{name}"),
            )
            .await;
        // Tell whoever watches the pod why it goes (best effort).
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
        let patch = json!({"status": {"conditions": conditions}});
        let _ = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
