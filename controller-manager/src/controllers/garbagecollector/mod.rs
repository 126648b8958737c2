//! The garbage collector (Kubernetes' pkg/controller/garbagecollector): deletes objects
//! whose owners are all gone, and carries out the foreground and orphan propagation
//! policies the apiserver records as finalizers.
//!
//! - [`monitor`]: one metadata watch per served kind feeds the [`graph`] of owners and
//!   dependents (no object cache: the graph is the cache). The kinds come from
//!   discovery ([`kinds::follow`]), custom resources included, and follow it: a new
//!   CustomResourceDefinition's kind is watched within a second or so of being served.
//!   Owner references resolve through the same discovery (group and kind, any served
//!   version).
//! - `attempt_to_delete` (queue `garbage_collector_attempt_to_delete`): look at one
//!   object; if none of its owners is left (404, or another uid under the owner's
//!   name) delete it, with the propagation its own finalizers ask for (else
//!   Background); if some owner is left, drop the references to the gone ones. An
//!   owner in foreground deletion (`foregroundDeletion` finalizer) gets its dependents
//!   deleted in foreground and loses the finalizer once no dependent with
//!   `blockOwnerDeletion` is left.
//! - `attempt_to_orphan` (queue `garbage_collector_attempt_to_orphan`): an owner
//!   deleted with the `orphan` finalizer has its references removed from every
//!   dependent, then loses the finalizer.

mod graph;
mod monitor;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_client::{
    ApiResource, Client, DeleteParams, Discovery, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use keelson_component::{Queue, Requeue};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::common::kinds;
use crate::Context;
use graph::{owner_refs, Graph, Item, ObjectRef, Work, FOREGROUND, ORPHAN};

/// Workers per queue (Kubernetes' `--concurrent-gc-syncs` default).
const WORKERS: usize = 20;
/// How soon to look again at a virtual node that exists but is not watched yet.
const UNOBSERVED_RETRY: Duration = Duration::from_secs(1);
/// Read-modify-write attempts on conflicts before the queue's backoff takes over.
const CONFLICT_RETRIES: usize = 3;

pub async fn run(ctx: Context) {
    let (served, keep_current) = kinds::follow(ctx.client.clone()).await;
    let gc = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Mutex::default(),
        delete_queue: Queue::new("garbage_collector_attempt_to_delete", &ctx.queue_metrics),
        orphan_queue: Queue::new("garbage_collector_attempt_to_orphan", &ctx.queue_metrics),
        served: served.clone(),
    });
    // Dropping the monitors (when this future is dropped) stops the watches.
    let mut monitors = monitor::Monitors::default();
    let first = served.borrow().clone();
    let initial = monitors.sync(&gc, &first);
    let (d, o) = (gc.clone(), gc.clone());
    tokio::join!(
        keep_current,
        follow_discovery(gc.clone(), monitors, served),
        async move {
            // A monitor stopped before its first list drops its signal: not waited for.
            join_all(initial).await;
            tracing::info!(objects = gc.graph().len(), "garbage collector synced");
            tokio::join!(
                gc.delete_queue.clone().run(WORKERS, move |uid: String| {
                    let gc = d.clone();
                    async move { gc.attempt_to_delete(&uid).await }
                }),
                gc.orphan_queue.clone().run(WORKERS, move |uid: String| {
                    let gc = o.clone();
                    async move { gc.attempt_to_orphan(&uid).await }
                }),
            )
        },
    );
}

/// Start and stop monitors as discovery changes.
async fn follow_discovery(
    gc: Arc<Collector>,
    mut monitors: monitor::Monitors,
    mut served: watch::Receiver<Arc<Discovery>>,
) {
    while served.changed().await.is_ok() {
        let now = served.borrow_and_update().clone();
        monitors.sync(&gc, &now);
        tracing::debug!(
            kinds = monitors.len(),
            "garbage collector monitors follow discovery"
        );
    }
    // The sender is gone only when this process stops; keep the monitors until then.
    std::future::pending::<()>().await
}

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    delete_queue: Queue<String>,
    orphan_queue: Queue<String>,
    /// What the apiserver serves, kept current by [`kinds::follow`].
    served: watch::Receiver<Arc<Discovery>>,
}

/// Why an owner reference does or does not keep its dependent.
enum OwnerState {
    /// The owner exists (or cannot be resolved, which must not delete anything).
    Solid,
    /// Gone: 404, or another uid under its name.
    Dangling,
    /// Being deleted in foreground, waiting for its dependents.
    Waiting,
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The served resource of an object's `apiVersion` and `kind` (any served version
    /// of its group and kind).
    fn resource(&self, api_version: &str, kind: &str) -> Option<ApiResource> {
        let served = self.served.borrow();
        served.kind(api_version, kind).map(|r| r.resource.clone())
    }

    /// Change the graph and queue the work the change makes.
    fn update(&self, change: impl FnOnce(&mut Graph) -> Work) {
        let work = change(&mut self.graph());
        for uid in work.attempt_to_delete {
            self.delete_queue.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.orphan_queue.add(uid);
        }
    }

    /// The live object at `identity`; `None` when it is gone (or replaced by another
    /// uid) or its kind is not served.
    async fn get_live(&self, identity: &ObjectRef) -> anyhow::Result<Option<Value>> {
        let Some(r) = self.resource(&identity.api_version, &identity.kind) else {
            return Ok(None);
        };
        let api = kinds::api(&self.client, &r, identity.namespace.as_deref());
        Ok(api
            .get_opt(&identity.name)
            .await?
            .filter(|o| o.pointer("/metadata/uid").and_then(Value::as_str) == Some(&identity.uid)))
    }

    async fn attempt_to_delete(&self, uid: &str) -> anyhow::Result<Requeue> {
        let Some(item) = self.graph().item(uid) else {
            return Ok(None);
        };
        // Being deleted is a one-way trip; its dependents are looked at once it is gone.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(None);
        }
        if self
            .resource(&item.identity.api_version, &item.identity.kind)
            .is_none()
        {
            tracing::debug!(object = %item.identity, "garbage collector: kind not served; skipped");
            return Ok(None);
        }
        let Some(latest) = self.get_live(&item.identity).await? else {
            self.update(|g| g.absent(&item.identity));
            return Ok(None);
        };
        if !item.observed {
            // It exists but its watch has not shown it yet.
            return Ok(Some(UNOBSERVED_RETRY));
        }
        if item.deleting_dependents {
            return self.process_deleting_dependents(&item).await;
        }
        let refs = owner_refs(&latest);
        if refs.is_empty() {
            return Ok(None);
        }
        let (mut solid, mut gone, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &refs {
            match self.owner_state(&item.identity, r).await? {
                OwnerState::Solid => solid.push(r.uid.as_str()),
                OwnerState::Dangling => gone.push(r.uid.as_str()),
                OwnerState::Waiting => waiting.push(r.uid.as_str()),
            }
        }
        if !solid.is_empty() {
            // Some owner is left: drop the references that would keep a gone owner, or
            // an owner waiting in foreground, waiting on us forever.
            gone.extend(waiting);
            if !gone.is_empty() {
                tracing::info!(object = %item.identity, owners = ?gone, "garbage collector: removing references to owners being deleted or gone");
                self.remove_owner_refs(&item.identity, &gone).await?;
            }
            return Ok(None);
        }
        let policy = if !waiting.is_empty() && !item.dependents.is_empty() {
            // An owner waits for us and we have dependents: go in foreground too,
            // unblocking our owners first if a dependent might wait on us (a cycle).
            if item.dependent_deleting_dependents {
                self.unblock_owner_refs(&item.identity).await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(object = %item.identity, ?policy, "garbage collector: deleting object whose owners are gone");
        self.delete_object(&item.identity, &latest, policy).await?;
        Ok(None)
    }

    /// Whether the owner `r` of `dependent` still holds it.
    async fn owner_state(
        &self,
        dependent: &ObjectRef,
        r: &OwnerReference,
    ) -> anyhow::Result<OwnerState> {
        if self.graph().known_absent(&r.uid) {
            return Ok(OwnerState::Dangling);
        }
        // A kind not served (yet) cannot be checked: never delete on that.
        let Some(owner_kind) = self.resource(&r.api_version, &r.kind) else {
            return Ok(OwnerState::Solid);
        };
        if owner_kind.namespaced && dependent.namespace.is_none() {
            // A cluster-scoped object cannot have a namespaced owner: unresolvable,
            // and so never collected (as Kubernetes).
            return Ok(OwnerState::Solid);
        }
        let api = kinds::api(&self.client, &owner_kind, dependent.namespace.as_deref());
        let owner = match api.get_opt(&r.name).await? {
            Some(o) if o.pointer("/metadata/uid").and_then(Value::as_str) == Some(&r.uid) => o,
            _ => {
                self.graph().mark_absent(&r.uid);
                return Ok(OwnerState::Dangling);
            }
        };
        let deleting = owner
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        Ok(if deleting && has_finalizer(&owner, FOREGROUND) {
            OwnerState::Waiting
        } else {
            OwnerState::Solid
        })
    }

    /// An owner in foreground deletion: done once no dependent blocks it; until then
    /// its blocking dependents are deleted.
    async fn process_deleting_dependents(&self, item: &Item) -> anyhow::Result<Requeue> {
        let blocking = self.graph().blocking_dependents(&item.identity.uid);
        if blocking.is_empty() {
            tracing::info!(object = %item.identity, "garbage collector: dependents gone; removing the foregroundDeletion finalizer");
            self.remove_finalizer(&item.identity, FOREGROUND).await?;
            return Ok(None);
        }
        for (dep, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.delete_queue.add(dep);
            }
        }
        Ok(None)
    }

    async fn attempt_to_orphan(&self, uid: &str) -> anyhow::Result<Requeue> {
        let Some(item) = self.graph().item(uid) else {
            return Ok(None);
        };
        let owner = [uid];
        let results = join_all(
            item.dependents
                .iter()
                .map(|d| self.remove_owner_refs(d, &owner)),
        )
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e.context(format!("orphaning the dependents of {}", item.identity)));
        }
        tracing::info!(object = %item.identity, dependents = item.dependents.len(), "garbage collector: dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&item.identity, ORPHAN).await?;
        Ok(None)
    }

    /// Delete with uid and resourceVersion preconditions, so a dependent that got a
    /// new owner meanwhile is not deleted. A conflict that changed nothing about the
    /// owners is retried with the new resourceVersion.
    async fn delete_object(
        &self,
        identity: &ObjectRef,
        latest: &Value,
        policy: PropagationPolicy,
    ) -> anyhow::Result<()> {
        let Some(r) = self.resource(&identity.api_version, &identity.kind) else {
            // No longer served (its CRD went, taking its objects).
            return Ok(());
        };
        let api = kinds::api(&self.client, &r, identity.namespace.as_deref());
        let owners = owner_refs(latest);
        let mut rv = resource_version(latest);
        for _ in 0..CONFLICT_RETRIES {
            let params = DeleteParams {
                propagation_policy: Some(policy),
                preconditions: Some(Preconditions {
                    uid: Some(identity.uid.clone()),
                    resource_version: Some(rv.clone()),
                }),
                ..Default::default()
            };
            match api.delete(&identity.name, &params).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => {
                    self.update(|g| g.absent(identity));
                    return Ok(());
                }
                Err(e) if e.is_conflict() => match self.get_live(identity).await? {
                    None => return Ok(()),
                    Some(live) if owner_refs(&live) == owners => rv = resource_version(&live),
                    Some(_) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("{identity} kept changing while being deleted")
    }

    /// Read-modify-write of `metadata` through a merge patch carrying the
    /// resourceVersion read, retried on conflict. `change` returns the metadata fields
    /// to write, or `None` when there is nothing to do.
    async fn patch_metadata(
        &self,
        identity: &ObjectRef,
        change: impl Fn(&Value) -> Option<Value>,
    ) -> anyhow::Result<()> {
        let Some(r) = self.resource(&identity.api_version, &identity.kind) else {
            return Ok(());
        };
        let api = kinds::api(&self.client, &r, identity.namespace.as_deref());
        for _ in 0..CONFLICT_RETRIES {
            let Some(live) = self.get_live(identity).await? else {
                return Ok(());
            };
            let Some(mut fields) = change(&live) else {
                return Ok(());
            };
            fields["resourceVersion"] = json!(resource_version(&live));
            let patch = Patch::Merge(json!({ "metadata": fields }));
            match api
                .patch(&identity.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("{identity} kept changing while being patched")
    }

    async fn remove_owner_refs(
        &self,
        identity: &ObjectRef,
        owner_uids: &[&str],
    ) -> anyhow::Result<()> {
        self.patch_metadata(identity, |live| {
            let refs = owner_refs(live);
            let kept: Vec<&OwnerReference> = refs
                .iter()
                .filter(|r| !owner_uids.contains(&r.uid.as_str()))
                .collect();
            (kept.len() != refs.len()).then(|| json!({ "ownerReferences": non_empty(&kept) }))
        })
        .await
    }

    /// Turn off `blockOwnerDeletion` on every owner reference.
    async fn unblock_owner_refs(&self, identity: &ObjectRef) -> anyhow::Result<()> {
        self.patch_metadata(identity, |live| {
            let mut refs = owner_refs(live);
            let mut changed = false;
            for r in refs
                .iter_mut()
                .filter(|r| r.block_owner_deletion == Some(true))
            {
                r.block_owner_deletion = Some(false);
                changed = true;
            }
            changed.then(|| json!({ "ownerReferences": refs }))
        })
        .await
    }

    async fn remove_finalizer(&self, identity: &ObjectRef, finalizer: &str) -> anyhow::Result<()> {
        self.patch_metadata(identity, |live| {
            let fins: Vec<&str> = live
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let kept: Vec<&str> = fins.iter().copied().filter(|f| *f != finalizer).collect();
            (kept.len() != fins.len()).then(|| json!({ "finalizers": non_empty(&kept) }))
        })
        .await
    }
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|f| f == finalizer))
}

fn resource_version(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A list for a merge patch: `null` (remove the field) when empty.
fn non_empty<T: serde::Serialize>(items: &[T]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    }
}
