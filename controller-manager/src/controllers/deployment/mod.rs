//! Deployment: rolls a pod template out through ReplicaSets (Kubernetes'
//! `pkg/controller/deployment`).
//!
//! A Deployment owns one ReplicaSet per template it has run, named
//! `<deployment>-<pod-template-hash>`. The one whose template equals the
//! deployment's is the *new* ReplicaSet; the rest are *old*. A sync:
//!
//! 1. claims ReplicaSets (adopt matching orphans, release ones that stop matching),
//! 2. finds the new ReplicaSet and keeps its revision annotations in step ([`history`]),
//! 3. if paused, or only the replica count changed, scales the ReplicaSets
//!    proportionally ([`scale`]); otherwise rolls out by the strategy ([`rolling`],
//!    [`recreate`]), creating the new ReplicaSet when needed,
//! 4. writes status and the Progressing/Available conditions ([`status`]).
//!
//! The ReplicaSet controller creates the pods; this controller only sizes ReplicaSets.

mod history;
mod recreate;
mod rolling;
mod scale;
mod status;
mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, ObjectKey};
use keelson_component::{EventType, Queue, Requeue};

use crate::common::owner::{claim, controller_of, parse_selector, ClaimResult};
use crate::common::pods;
use crate::Context;

pub async fn run(ctx: Context) {
    let d_informer = ctx.informers.get::<Deployment>();
    let rs_informer = ctx.informers.get::<ReplicaSet>();
    let pod_informer = ctx.informers.get::<Pod>();
    let queue: Queue<ObjectKey> = Queue::new("deployment", &ctx.queue_metrics);
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        deployments: d_informer.store(),
        replica_sets: rs_informer.store(),
        pods: pod_informer.store(),
    });

    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    d_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |d: Arc<Deployment>| q1.add(d.key()))
            .on_update(move |_, d: Arc<Deployment>| q2.add(d.key()))
            .on_delete(move |d: Arc<Deployment>| q3.add(d.key())),
    );

    let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    rs_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |rs: Arc<ReplicaSet>| {
                for key in c1.deployments_for_rs(&rs) {
                    q1.add(key);
                }
            })
            .on_update(move |old: Arc<ReplicaSet>, new: Arc<ReplicaSet>| {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                // A changed controller or labels concern the old owner too.
                let mut keys = c2.deployments_for_rs(&new);
                if controller_of(&old.metadata) != controller_of(&new.metadata)
                    || old.metadata.labels != new.metadata.labels
                {
                    for key in c2.deployments_for_rs(&old) {
                        if !keys.contains(&key) {
                            keys.push(key);
                        }
                    }
                }
                for key in keys {
                    q2.add(key);
                }
            })
            .on_delete(move |rs: Arc<ReplicaSet>| {
                if let Some(key) = c3.owner_of_rs(&rs) {
                    q3.add(key);
                }
            }),
    );

    // Pods matter only to Recreate, which waits for the old pods to be gone.
    let (c4, q4) = (c.clone(), queue.clone());
    pod_informer.add_handler(HandlerFuncs::new().on_delete(move |pod: Arc<Pod>| {
        if let Some(key) = c4.recreate_deployment_of_pod(&pod) {
            q4.add(key);
        }
    }));

    d_informer.wait_for_sync().await;
    rs_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    let workers = ctx.options.concurrent_syncs;
    queue
        .run(workers, move |key| {
            let c = c.clone();
            async move {
                match c.sync(&key).await {
                    // Our cache was behind a write: look again shortly, quietly.
                    Err(e) if is_conflict(&e) => {
                        tracing::debug!(deployment = %key, error = %e, "conflict; syncing again");
                        Ok(Some(Duration::from_millis(100)))
                    }
                    other => other,
                }
            }
        })
        .await;
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<keelson_client::Error>()
        .is_some_and(|e| e.is_conflict())
}

pub(super) struct Controller {
    ctx: Context,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// A deployment's ReplicaSets: the one running its current template (if any yet)
/// and all the others.
#[derive(Debug, Default)]
pub(super) struct Family {
    pub new: Option<ReplicaSet>,
    pub old: Vec<ReplicaSet>,
}

impl Family {
    /// Kubernetes' `FindNewReplicaSet`/`FindOldReplicaSets`: the oldest ReplicaSet with
    /// the deployment's template is the new one.
    fn split(d: &Deployment, mut rss: Vec<ReplicaSet>) -> Family {
        rss.sort_by(util::by_creation);
        let template = util::template(d);
        let new_at = rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| util::equal_ignore_hash(t, &template))
        });
        let new = new_at.map(|i| rss.remove(i));
        Family { new, old: rss }
    }

    /// Old ones first, then the new one.
    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.old.iter().chain(self.new.iter())
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut ReplicaSet> {
        self.old
            .iter_mut()
            .chain(self.new.iter_mut())
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
    }
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    parse_selector(&d.spec.as_ref()?.selector)
}

impl Controller {
    fn rs_api(&self, d: &Deployment) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), d.namespace().unwrap_or_default())
    }

    fn api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), d.namespace().unwrap_or_default())
    }

    async fn event(&self, d: &Deployment, kind: EventType, reason: &str, message: &str) {
        let r = keelson_component::events::reference(d);
        self.ctx.recorder.record(&r, kind, reason, message).await;
    }

    /// The deployment controlling `rs`, if it is one we know.
    fn owner_of_rs(&self, rs: &ReplicaSet) -> Option<ObjectKey> {
        let r = controller_of(&rs.metadata)?;
        if r.kind != "Deployment" {
            return None;
        }
        let d = self
            .deployments
            .get_by_name(rs.metadata.namespace.as_deref(), &r.name)?;
        (d.uid() == Some(r.uid.as_str())).then(|| d.key())
    }

    /// The deployments a ReplicaSet change concerns: its controller, or for an orphan
    /// every deployment in its namespace that selects it (one may adopt it).
    fn deployments_for_rs(&self, rs: &ReplicaSet) -> Vec<ObjectKey> {
        if controller_of(&rs.metadata).is_some() {
            return self.owner_of_rs(rs).into_iter().collect();
        }
        if rs.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        self.deployments
            .list_namespace(rs.namespace().unwrap_or_default())
            .into_iter()
            .filter(|d| {
                selector_of(d).is_some_and(|s| !s.is_empty() && pods::selects(&s, &rs.metadata))
            })
            .map(|d| d.key())
            .collect()
    }

    /// The Recreate deployment whose ReplicaSet controlled `pod`.
    fn recreate_deployment_of_pod(&self, pod: &Pod) -> Option<ObjectKey> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != "ReplicaSet" {
            return None;
        }
        let rs = self
            .replica_sets
            .get_by_name(pod.metadata.namespace.as_deref(), &r.name)?;
        let key = self.owner_of_rs(&rs)?;
        let d = self.deployments.get(&key)?;
        util::is_recreate(&d).then_some(key)
    }

    /// Kubernetes' `syncDeployment`.
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(None);
        };
        let mut d = (*d).clone();
        let selector = match selector_of(&d) {
            Some(s) if !s.is_empty() => s,
            _ => return self.select_nothing(&mut d).await,
        };
        let rss = self.claim_replica_sets(&d, &selector).await?;
        let mut fam = Family::split(&d, rss);

        if d.metadata.deletion_timestamp.is_some() {
            self.sync_new_rs(&mut d, &mut fam, false).await?;
            self.sync_status(&mut d, &fam).await?;
            return Ok(None);
        }
        self.check_paused_conditions(&mut d).await?;
        self.sync_new_rs(&mut d, &mut fam, false).await?;
        if util::is_paused(&d) || is_scaling_event(&d, &fam) {
            return self.sync_scaling(&mut d, fam).await;
        }
        if util::is_recreate(&d) {
            self.rollout_recreate(&mut d, fam, &selector).await
        } else {
            self.rollout_rolling(&mut d, fam).await
        }
    }

    /// An empty selector would select every pod: refuse, as Kubernetes does.
    async fn select_nothing(&self, d: &mut Deployment) -> anyhow::Result<Requeue> {
        self.event(
            d,
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        .await;
        let mut status = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or(0);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            self.write_status(d, status).await?;
        }
        Ok(None)
    }

    /// The ReplicaSets this deployment controls and selects, after adopting matching
    /// orphans and releasing controlled ones whose labels stopped matching.
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        selector: &LabelSelector,
    ) -> anyhow::Result<Vec<ReplicaSet>> {
        let api = self.rs_api(d);
        let mut owned = Vec::new();
        for rs in self
            .replica_sets
            .list_namespace(d.namespace().unwrap_or_default())
        {
            if controller_of(&rs.metadata).is_none() && !pods::selects(selector, &rs.metadata) {
                continue;
            }
            if claim(d, selector, rs.as_ref(), &api).await? == ClaimResult::Owned {
                owned.push((*rs).clone());
            }
        }
        Ok(owned)
    }

    /// Patch `rs` (conditioned on its resourceVersion) and keep the result.
    async fn patch_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        mut patch: serde_json::Value,
    ) -> anyhow::Result<()> {
        patch["metadata"]["resourceVersion"] = rs.metadata.resource_version.clone().into();
        let name = rs.metadata.name.clone().unwrap_or_default();
        *rs = self
            .rs_api(d)
            .patch(
                &name,
                &Default::default(),
                &keelson_client::Patch::Merge(patch),
            )
            .await?;
        Ok(())
    }
}

/// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for a different
/// replica count than the deployment now asks for.
fn is_scaling_event(d: &Deployment, fam: &Family) -> bool {
    let want = util::replicas(d);
    fam.all()
        .filter(|rs| util::rs_replicas(rs) > 0)
        .filter_map(util::desired_replicas_annotation)
        .any(|desired| desired != want)
}
