//! StatefulSet (Kubernetes' `pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>`, hostnames and PersistentVolumeClaims.
//!
//! Each sync builds the set's revisions (the current one, which existing pods run, and
//! the update one, from the set's template), then walks the ordinals:
//!
//! 1. every ordinal in range gets a pod (claims first); failed pods are deleted and so
//!    recreated. `OrderedReady` stops at the first pod that is not yet Running and
//!    Ready; `Parallel` does them all at once;
//! 2. pods beyond the range are deleted, highest ordinal first (one at a time when
//!    ordered);
//! 3. `RollingUpdate`: the highest ordinal >= partition not at the update revision is
//!    deleted (and recreated at it by step 1), one at a time, each waiting for the ones
//!    above it to be available again. `OnDelete`: pods change only when deleted.
//!
//! Then status is written and revisions beyond `revisionHistoryLimit` are deleted.

mod identity;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Patch, PatchParams, PostParams};
use keelson_component::{EventType, Queue, Requeue};
use serde_json::{json, Value};

use crate::common::owner::{claim, owners_of, parse_selector, ClaimResult};
use crate::common::pods;
use crate::common::revisions::{self, HASH_LABEL};
use crate::common::slowstart::slow_start;
use crate::Context;

pub async fn run(ctx: Context) {
    let set_informer = ctx.informers.get::<StatefulSet>();
    let pod_informer = ctx.informers.get::<Pod>();
    let revision_informer = ctx.informers.get::<ControllerRevision>();
    let claim_informer = ctx.informers.get::<PersistentVolumeClaim>();
    let queue: Queue<ObjectKey> = Queue::new("statefulset", &ctx.queue_metrics);
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        sets: set_informer.store(),
        pods: pod_informer.store(),
        revisions: revision_informer.store(),
        claims: claim_informer.store(),
    });

    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    set_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<StatefulSet>| q1.add(s.key()))
            .on_update(move |_, s: Arc<StatefulSet>| q2.add(s.key()))
            .on_delete(move |s: Arc<StatefulSet>| q3.add(s.key())),
    );
    let (c1, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    pod_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| c1.sets_of(&p).into_iter().for_each(|k| q1.add(k)))
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let mut keys = c2.sets_of(&old);
                keys.extend(c2.sets_of(&new));
                keys.dedup();
                keys.into_iter().for_each(|k| q2.add(k));
            })
            .on_delete(move |p: Arc<Pod>| c3.sets_of(&p).into_iter().for_each(|k| q3.add(k))),
    );

    set_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    revision_informer.wait_for_sync().await;
    claim_informer.wait_for_sync().await;
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
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
}

fn selector_of(set: &StatefulSet) -> Option<LabelSelector> {
    parse_selector(&set.spec.as_ref()?.selector)
}

impl Controller {
    /// The sets a pod change concerns (see [`owners_of`]).
    fn sets_of(&self, pod: &Pod) -> Vec<ObjectKey> {
        owners_of(&self.sets, &pod.metadata, selector_of)
    }

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(set) = self.sets.get(key) else {
            return Ok(None);
        };
        // Pods and claims of a set being deleted are the garbage collector's.
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(selector) = selector_of(&set) else {
            return Ok(None);
        };
        let ns = key.namespace.as_deref().unwrap_or_default();
        let client = self.ctx.client.clone();
        let revision_api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);

        let history =
            revisions::claim_all(&self.revisions, &revision_api, set.as_ref(), &selector).await?;
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            if identity::ordinal_in(&set, &pod).is_some()
                && claim(set.as_ref(), &selector, pod.as_ref(), &pod_api).await?
                    == ClaimResult::Owned
            {
                owned.push(pod);
            }
        }
        let (current, update, collisions) = self
            .current_and_update(&set, &history, &revision_api)
            .await?;

        let round = Round {
            c: self,
            set: &set,
            current_template: revisions::template_of(&current).context("current revision")?,
            update_template: revisions::template_of(&update).context("update revision")?,
            current,
            update,
            pod_api,
            claim_api: Api::namespaced(client, ns),
            monotonic: set
                .spec
                .as_ref()
                .and_then(|s| s.pod_management_policy.as_deref())
                != Some("Parallel"),
            min_ready: set
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0),
            now: jiff::Timestamp::now(),
        };
        let counts = round.count(&owned);
        let result = round.reconcile(&owned).await;
        let current_revision = round.write_status(&counts, collisions).await?;

        let mut live: HashSet<&str> = owned
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(HASH_LABEL)
                    .map(String::as_str)
            })
            .collect();
        live.insert(&current_revision);
        live.insert(name(round.current.as_ref()));
        live.insert(name(round.update.as_ref()));
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        revisions::truncate(&revision_api, &history, &live, limit).await?;
        result?;

        // Look again when a ready pod becomes available (minReadySeconds).
        Ok(owned
            .iter()
            .filter_map(|p| pods::until_available(p, round.min_ready, round.now))
            .min()
            .map(|d| d + Duration::from_millis(100)))
    }

    /// Kubernetes' `getStatefulSetRevisions`: the update revision is the one holding the
    /// set's template (created, or renumbered to be the newest on a rollback); the
    /// current one is the status' `currentRevision`, or the update one at first.
    async fn current_and_update(
        &self,
        set: &StatefulSet,
        history: &[Arc<ControllerRevision>],
        api: &Api<ControllerRevision>,
    ) -> anyhow::Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32)> {
        let spec = set.spec.as_ref().context("no spec")?;
        let mut collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let data = revisions::template_patch(&spec.template);
        let next = revisions::next_number(history);
        let equal = history
            .iter()
            .rev()
            .find(|r| revisions::same_data(r, &data));
        let update = match equal {
            Some(r) if Some(name(r.as_ref())) == history.last().map(|l| name(l.as_ref())) => {
                r.clone()
            }
            Some(r) => Arc::new(revisions::renumber(api, r, next).await?),
            None => {
                let labels = spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref());
                Arc::new(revisions::create(api, set, labels, data, next, &mut collisions).await?)
            }
        };
        let wanted = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref());
        let current = history
            .iter()
            .find(|r| r.metadata.name.as_deref() == wanted && wanted.is_some())
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collisions))
    }
}

fn name<K: KubeObject>(o: &K) -> &str {
    o.name()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Pod counts for status.
#[derive(Default)]
struct Counts {
    replicas: i32,
    ready: i32,
    available: i32,
    current: i32,
    updated: i32,
}

/// One sync of one set, with its two revisions.
struct Round<'a> {
    c: &'a Controller,
    set: &'a StatefulSet,
    current: Arc<ControllerRevision>,
    update: Arc<ControllerRevision>,
    current_template: PodTemplateSpec,
    update_template: PodTemplateSpec,
    pod_api: Api<Pod>,
    claim_api: Api<PersistentVolumeClaim>,
    /// OrderedReady: one pod at a time, each Running and Ready before the next.
    monotonic: bool,
    min_ready: i32,
    now: jiff::Timestamp,
}

impl Round<'_> {
    fn running_and_ready(&self, pod: &Pod) -> bool {
        phase(pod) == "Running" && pods::is_ready(pod)
    }

    fn unavailable(&self, pod: &Pod) -> bool {
        !pods::is_available(pod, self.min_ready, self.now) || terminating(pod)
    }

    fn count(&self, owned: &[Arc<Pod>]) -> Counts {
        let mut n = Counts::default();
        for pod in owned {
            n.replicas += 1;
            if self.running_and_ready(pod) {
                n.ready += 1;
                if pods::is_available(pod, self.min_ready, self.now) {
                    n.available += 1;
                }
            }
            if !terminating(pod) {
                let rev = revision_of(pod);
                n.current += i32::from(rev == Some(name(self.current.as_ref())));
                n.updated += i32::from(rev == Some(name(self.update.as_ref())));
            }
        }
        n
    }

    async fn reconcile(&self, owned: &[Arc<Pod>]) -> anyhow::Result<()> {
        let set = self.set;
        let start = identity::start_ordinal(set);
        let mut slots: Vec<Option<&Arc<Pod>>> = vec![None; identity::replicas(set) as usize];
        let mut condemned: Vec<(i32, &Arc<Pod>)> = Vec::new();
        for pod in owned {
            let Some(ordinal) = identity::ordinal_in(set, pod) else {
                continue;
            };
            if identity::in_range(set, ordinal) {
                slots[(ordinal - start) as usize] = Some(pod);
            } else {
                condemned.push((ordinal, pod));
            }
        }
        condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
        // The first pod (lowest ordinal, in range first) that is not available: an
        // ordered scale-down may delete it even though it is unhealthy.
        let first_unhealthy = slots
            .iter()
            .enumerate()
            .find(|(_, s)| s.is_none_or(|p| self.unavailable(p)))
            .map(|(i, _)| identity::pod_name(set, start + i as i32))
            .or_else(|| {
                condemned
                    .iter()
                    .rev()
                    .find(|(_, p)| self.unavailable(p))
                    .map(|(_, p)| name(p.as_ref()).to_string())
            });

        // 1. Pods in range.
        if self.monotonic {
            for (i, slot) in slots.iter().enumerate() {
                if self
                    .process_replica(start + i as i32, slot.map(|p| p.as_ref()))
                    .await?
                {
                    return Ok(());
                }
            }
        } else {
            // Parallel: all at once, in slow-start batches that stop at an error.
            let outcome = slow_start(slots.len(), |i| {
                self.process_replica(start + i as i32, slots[i].map(|p| p.as_ref()))
            })
            .await;
            if let Some(e) = outcome.errors.into_iter().next() {
                return Err(e);
            }
        }

        // 2. Pods beyond the range: claims first (WhenScaled=Delete hands them to the
        //    pod), then the pods, highest ordinal first.
        for (ordinal, pod) in &condemned {
            self.fix_claim_owners(pod, *ordinal).await?;
        }
        if self.monotonic {
            if let Some((_, pod)) = condemned.first() {
                let healthy = self.running_and_ready(pod) && !self.unavailable(pod);
                if terminating(pod)
                    || (!healthy && first_unhealthy.as_deref() != Some(name(pod.as_ref())))
                {
                    return Ok(());
                }
                return self.delete(pod).await;
            }
        } else {
            let live = condemned.iter().filter(|(_, p)| !terminating(p));
            let results =
                futures::future::join_all(live.map(|(_, p)| self.delete(p.as_ref()))).await;
            results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        }

        // 3. Rolling update, from the highest ordinal down to the partition.
        let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
        if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
            return Ok(());
        }
        let partition = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0) as usize;
        for slot in slots.iter().skip(partition).rev() {
            let Some(pod) = slot else {
                return Ok(());
            };
            if revision_of(pod) != Some(name(self.update.as_ref())) && !terminating(pod) {
                return self.delete(pod).await;
            }
            if self.unavailable(pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Make the pod of `ordinal` exist and conform. Returns whether an ordered set must
    /// stop here (the pod is not Running and Ready yet).
    async fn process_replica(&self, ordinal: i32, pod: Option<&Pod>) -> anyhow::Result<bool> {
        let Some(pod) = pod else {
            self.create_pod(ordinal).await?;
            return Ok(self.monotonic);
        };
        if matches!(phase(pod), "Failed" | "Succeeded") {
            // Deleted now, created again once it is gone.
            if !terminating(pod) {
                self.delete(pod).await?;
            }
            return Ok(true);
        }
        if phase(pod) == "Pending" {
            self.create_claims(ordinal, Some(pod)).await?;
        }
        if self.monotonic
            && (terminating(pod) || !self.running_and_ready(pod) || self.unavailable(pod))
        {
            return Ok(true);
        }
        if !terminating(pod) {
            if let Some(labels) = identity::missing_identity_labels(pod, ordinal) {
                let patch = json!({"metadata": {"labels": labels}});
                self.pod_api
                    .patch(name(pod), &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
        }
        self.fix_claim_owners(pod, ordinal).await?;
        Ok(false)
    }

    /// Below the partition (or below `currentReplicas` without one), a rolling update
    /// recreates pods at the current revision; everything else gets the update one.
    fn uses_current(&self, ordinal: i32) -> bool {
        let strategy = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let start = identity::start_ordinal(self.set);
        match strategy.and_then(|s| s.rolling_update.as_ref()) {
            Some(ru) => ordinal < start + ru.partition.unwrap_or(0),
            None => {
                let current = self.set.status.as_ref().and_then(|s| s.current_replicas);
                rolling && ordinal < start + current.unwrap_or(0)
            }
        }
    }

    async fn create_pod(&self, ordinal: i32) -> anyhow::Result<()> {
        let (revision, template) = if self.uses_current(ordinal) {
            (&self.current, &self.current_template)
        } else {
            (&self.update, &self.update_template)
        };
        self.create_claims(ordinal, None).await?;
        let pod = identity::new_pod(self.set, template, ordinal, name(revision.as_ref()));
        let pod_name = identity::pod_name(self.set, ordinal);
        match self.pod_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                let msg = format!(
                    "create Pod {pod_name} in StatefulSet {} successful",
                    name(self.set)
                );
                self.event(EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
                Ok(())
            }
            // Our cache has not seen it yet; its event brings us back.
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => {
                let msg = format!(
                    "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                    name(self.set)
                );
                self.event(EventType::Warning, "FailedCreate", &msg).await;
                Err(e.into())
            }
        }
    }

    /// Create the claims of `ordinal` that do not exist yet.
    async fn create_claims(&self, ordinal: i32, pod: Option<&Pod>) -> anyhow::Result<()> {
        let ns = self.set.metadata.namespace.as_deref();
        for (_, mut claim) in identity::claims(self.set, ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            if let Some(existing) = self.c.claims.get_by_name(ns, &claim_name) {
                if existing.metadata.deletion_timestamp.is_some() {
                    anyhow::bail!("PersistentVolumeClaim {claim_name} is being deleted");
                }
                continue;
            }
            claim.metadata.owner_references =
                identity::claim_owner_refs(&[], self.set, pod, ordinal).filter(|r| !r.is_empty());
            let pod_name = identity::pod_name(self.set, ordinal);
            match self.claim_api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    let msg = format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                        name(self.set)
                    );
                    self.event(EventType::Normal, "SuccessfulCreate", &msg)
                        .await;
                }
                Err(e) if e.is_already_exists() => {}
                Err(e) => {
                    let msg = format!(
                        "create Claim {claim_name} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                        name(self.set)
                    );
                    self.event(EventType::Warning, "FailedCreate", &msg).await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Bring the owner references of the pod's claims in line with the retention policy.
    async fn fix_claim_owners(&self, pod: &Pod, ordinal: i32) -> anyhow::Result<()> {
        let ns = self.set.metadata.namespace.as_deref();
        for (_, want) in identity::claims(self.set, ordinal) {
            let claim_name = want.metadata.name.as_deref().unwrap_or_default();
            let Some(claim) = self.c.claims.get_by_name(ns, claim_name) else {
                continue;
            };
            let current = claim
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default();
            let Some(refs) = identity::claim_owner_refs(current, self.set, Some(pod), ordinal)
            else {
                continue;
            };
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version,
            }});
            match self
                .claim_api
                .patch(claim_name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn delete(&self, pod: &Pod) -> anyhow::Result<()> {
        match self
            .pod_api
            .delete(name(pod), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                let msg = format!(
                    "delete Pod {} in StatefulSet {} successful",
                    name(pod),
                    name(self.set)
                );
                self.event(EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => {
                let msg = format!(
                    "delete Pod {} in StatefulSet {} failed error: {e}",
                    name(pod),
                    name(self.set)
                );
                self.event(EventType::Warning, "FailedDelete", &msg).await;
                Err(e.into())
            }
        }
    }

    /// Write status when it changed. Returns the current revision written: a rolling
    /// update whose pods are all updated and ready makes the update revision current.
    async fn write_status(&self, n: &Counts, collisions: i32) -> anyhow::Result<String> {
        let set = self.set;
        let rolling = set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let (mut current_revision, mut current_replicas) = (name(self.current.as_ref()), n.current);
        if rolling && n.updated == n.replicas && n.ready == n.replicas {
            current_revision = name(self.update.as_ref());
            current_replicas = n.updated;
        }
        let want = json!({
            "observedGeneration": set.metadata.generation.unwrap_or(0),
            "replicas": n.replicas,
            "readyReplicas": n.ready,
            "availableReplicas": n.available,
            "currentReplicas": current_replicas,
            "updatedReplicas": n.updated,
            "currentRevision": current_revision,
            "updateRevision": name(self.update.as_ref()),
            "collisionCount": collisions,
        });
        let have = serde_json::to_value(&set.status).unwrap_or(Value::Null);
        let same = want.as_object().into_iter().flatten().all(|(k, v)| {
            let h = have.get(k).cloned().unwrap_or(Value::Null);
            h == *v || (h.is_null() && v == &json!(0))
        });
        if !same {
            let api: Api<StatefulSet> = Api::namespaced(
                self.c.ctx.client.clone(),
                set.namespace().unwrap_or_default(),
            );
            match api
                .patch_status(
                    name(set),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": want})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(current_revision.to_string())
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        let reference = keelson_component::events::reference(self.set);
        self.c
            .ctx
            .recorder
            .record(&reference, kind, reason, message)
            .await;
    }
}
