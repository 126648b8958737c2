//! ReplicaSet and ReplicationController: keep `replicas` pods matching the selector,
//! adopting orphans and releasing pods that stop matching, and report status.
//!
//! Both kinds share one controller through [`ReplicaOwner`]; they differ only in how
//! the selector is spelled.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Patch, PatchParams, PostParams};
use keelson_component::{EventType, Queue, Requeue};
use serde_json::{json, Value};

use crate::common::owner::{
    claim, controller_of, controller_ref, owners_of, parse_selector, ClaimResult,
};
use crate::common::pods::{self, deletion_order};
use crate::common::Expectations;
use crate::Context;

/// Most pods created or deleted in one sync (Kubernetes' burstReplicas).
const BURST: usize = 500;

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    KubeObject
    + Resource<Scope = k8s_openapi::NamespaceResourceScope>
    + Metadata<Ty = ObjectMeta>
    + std::fmt::Debug
{
    /// The parsed selector; `None` when it is missing or invalid (select nothing).
    fn selector(&self) -> Option<LabelSelector>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The current status as JSON (the two kinds share field names).
    fn status_json(&self) -> Value;
}

impl ReplicaOwner for ReplicaSet {
    fn selector(&self) -> Option<LabelSelector> {
        parse_selector(&self.spec.as_ref()?.selector)
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl ReplicaOwner for ReplicationController {
    fn selector(&self) -> Option<LabelSelector> {
        // An RC's selector is a plain map; empty or missing defaults to the template's
        // labels in the apiserver, so it is always set here.
        let sel = self.spec.as_ref()?.selector.as_ref()?;
        (!sel.is_empty())
            .then(|| LabelSelector::from_labels(sel.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

pub async fn run_replicasets(ctx: Context) {
    run::<ReplicaSet>(ctx, "replicaset").await
}

pub async fn run_replication_controllers(ctx: Context) {
    run::<ReplicationController>(ctx, "replicationmanager").await
}

struct Controller<K> {
    ctx: Context,
    owners: Store<K>,
    pods: Store<Pod>,
    expectations: Expectations,
}

async fn run<K: ReplicaOwner>(ctx: Context, queue_name: &str) {
    let owner_informer = ctx.informers.get::<K>();
    let pod_informer = ctx.informers.get::<Pod>();
    let queue: Queue<ObjectKey> = Queue::new(queue_name, &ctx.queue_metrics);
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        owners: owner_informer.store(),
        pods: pod_informer.store(),
        expectations: Expectations::default(),
    });

    let q = queue.clone();
    let run_queue = queue.clone();
    owner_informer.add_handler(
        HandlerFuncs::new()
            .on_add({
                let q = q.clone();
                move |o: Arc<K>| q.add(o.key())
            })
            .on_update({
                let q = q.clone();
                move |_, o: Arc<K>| q.add(o.key())
            })
            .on_delete(move |o: Arc<K>| q.add(o.key())),
    );

    let c = controller.clone();
    let (c2, c3) = (controller.clone(), controller.clone());
    let (q2, q3) = (queue.clone(), queue.clone());
    pod_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| {
                if p.metadata.deletion_timestamp.is_some() {
                    // Restarted with a pod already being deleted: a deletion, not a creation.
                    for key in c.owners_of(&p) {
                        c.expectations.deletion_observed(&key);
                        queue.add(key);
                    }
                    return;
                }
                for key in c.owners_of(&p) {
                    c.expectations.creation_observed(&key);
                    queue.add(key);
                }
            })
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if old.metadata.deletion_timestamp.is_none()
                    && new.metadata.deletion_timestamp.is_some()
                {
                    for key in c2.owners_of(&new) {
                        c2.expectations.deletion_observed(&key);
                    }
                }
                // Labels or the controller may have changed: both old and new owners look.
                let mut keys = c2.owners_of(&old);
                for key in c2.owners_of(&new) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                for key in keys {
                    q2.add(key);
                }
            })
            .on_delete(move |p: Arc<Pod>| {
                for key in c3.owners_of(&p) {
                    if p.metadata.deletion_timestamp.is_none() {
                        c3.expectations.deletion_observed(&key);
                    }
                    q3.add(key);
                }
            }),
    );

    owner_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    let workers = ctx.options.concurrent_syncs;
    let reconcile_with = controller.clone();
    run_queue
        .run(workers, move |key| {
            let c = reconcile_with.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

impl<K: ReplicaOwner> Controller<K> {
    /// The owners a pod change concerns (see [`owners_of`]).
    fn owners_of(&self, pod: &Pod) -> Vec<ObjectKey> {
        owners_of(&self.owners, &pod.metadata, |o: &K| o.selector())
    }

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(owner) = self.owners.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let ns = key.namespace.as_deref().unwrap_or_default();
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let selector = owner.selector().unwrap_or_else(LabelSelector::nothing);
        let needs_sync =
            self.expectations.satisfied(key) && owner.metadata().deletion_timestamp.is_none();

        // Claim: our active pods, after adopting orphans and releasing non-matching ones.
        let mut owned: Vec<Arc<Pod>> = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            if !pods::is_active(&pod) && controller_of(&pod.metadata).is_none() {
                continue;
            }
            if claim(owner.as_ref(), &selector, pod.as_ref(), &pod_api).await? == ClaimResult::Owned
            {
                owned.push(pod);
            }
        }
        let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| pods::is_active(p)).collect();

        let mut failure = None;
        if needs_sync {
            failure = self
                .manage_replicas(key, owner.as_ref(), &active, &pod_api)
                .await;
        }
        let requeue = self
            .update_status(owner.as_ref(), &active, failure.as_deref())
            .await?;
        match failure {
            // Creating failed (quota, admission): retry with backoff.
            Some(f) => Err(anyhow::anyhow!(f)),
            None => Ok(requeue),
        }
    }

    /// Create or delete pods to reach `replicas`. Returns the first creation error.
    async fn manage_replicas(
        &self,
        key: &ObjectKey,
        owner: &K,
        active: &[Arc<Pod>],
        pod_api: &Api<Pod>,
    ) -> Option<String> {
        let want = owner.replicas().max(0) as usize;
        if active.len() < want {
            let Some(template) = owner.template() else {
                return Some("no pod template".into());
            };
            let count = (want - active.len()).min(BURST);
            self.expectations.expect(key, count as i64, 0);
            let ns = key.namespace.as_deref().unwrap_or_default();
            let prefix = pods::generate_name_prefix(&key.name);
            let owner_ref = controller_ref(owner);
            // Slow start: batches of 1, 2, 4, ... stop at the first batch with an error,
            // so a quota or admission failure costs one request, not hundreds.
            let mut created = 0;
            let mut batch = 1;
            while created < count {
                let n = batch.min(count - created);
                let results = futures::future::join_all((0..n).map(|_| {
                    let pod = pods::from_template(template, ns, owner_ref.clone(), &prefix, None);
                    async move { pod_api.create(&PostParams::default(), &pod).await }
                }))
                .await;
                let mut error = None;
                for r in results {
                    match r {
                        Ok(pod) => {
                            let name = pod.metadata.name.unwrap_or_default();
                            self.event(
                                owner,
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!("Created pod: {name}"),
                            )
                            .await;
                        }
                        Err(e) => {
                            self.expectations.creation_observed(key);
                            error.get_or_insert(e.to_string());
                        }
                    }
                }
                created += n;
                if let Some(e) = error {
                    for _ in created..count {
                        self.expectations.creation_observed(key);
                    }
                    self.event(
                        owner,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await;
                    return Some(e);
                }
                batch *= 2;
            }
        } else if active.len() > want {
            let mut victims: Vec<&Arc<Pod>> = active.iter().collect();
            victims.sort_by(|a, b| deletion_order(a, b));
            victims.truncate((active.len() - want).min(BURST));
            self.expectations.expect(key, 0, victims.len() as i64);
            let results = futures::future::join_all(victims.iter().map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                async move { (pod_api.delete(&name, &DeleteParams::default()).await, name) }
            }))
            .await;
            for (r, name) in results {
                match r {
                    Ok(_) => {
                        self.event(
                            owner,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key);
                        if !e.is_not_found() {
                            tracing::warn!(pod = %name, error = %e, "deleting a surplus pod failed");
                        }
                    }
                }
            }
        }
        None
    }

    /// Write status when it changed; ask to be looked at again when a ready pod is
    /// about to become available (minReadySeconds).
    async fn update_status(
        &self,
        owner: &K,
        active: &[Arc<Pod>],
        failure: Option<&str>,
    ) -> anyhow::Result<Requeue> {
        let now = jiff::Timestamp::now();
        let min_ready = owner.min_ready_seconds();
        let ready = active.iter().filter(|p| pods::is_ready(p)).count();
        let available = active
            .iter()
            .filter(|p| pods::is_available(p, min_ready, now))
            .count();
        let fully_labeled = active
            .iter()
            .filter(|p| pods::fully_labeled(p, owner.template()))
            .count();
        let current = owner.status_json();
        let mut conditions: Vec<Value> = current
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["type"] != "ReplicaFailure")
            .collect();
        if let Some(message) = failure {
            let previous = current
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "ReplicaFailure"));
            let since = previous
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now.to_string()));
            conditions.push(json!({
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": message,
                "lastTransitionTime": since,
            }));
        }
        let mut status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": owner.metadata().generation.unwrap_or(0),
        });
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        if !same_status(&current, &status) {
            // A merge patch naming every field: zero counts must be written, not omitted.
            let mut patch = json!({"status": status.clone()});
            if conditions.is_empty() && current.get("conditions").is_some() {
                patch["status"]["conditions"] = Value::Null;
            }
            let api: Api<K> = Api::namespaced(
                self.ctx.client.clone(),
                owner.namespace().unwrap_or_default(),
            );
            match api
                .patch_status(owner.name(), &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let next = active
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min();
        Ok(next.map(|d| d + Duration::from_millis(100)))
    }

    async fn event(&self, owner: &K, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(
                &keelson_component::events::reference(owner),
                kind,
                reason,
                message,
            )
            .await;
    }
}

/// Status equality that treats absent counts as zero (the apiserver omits zeros).
fn same_status(current: &Value, want: &Value) -> bool {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .all(|k| num(current, k) == num(want, k))
        && current.get("conditions").map(strip_times) == want.get("conditions").map(strip_times)
}

fn strip_times(conditions: &Value) -> Vec<(Value, Value, Value)> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["type"].clone(), c["status"].clone(), c["message"].clone()))
        .collect()
}
