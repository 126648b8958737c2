//! Which pods belong to a Job (controller reference, adoption of matching orphans)
//! and how pod events reach it: creation and deletion expectations, observed
//! finalizer removals, and releasing pods whose Job is gone or finished.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::{Api, KubeObject, ObjectKey, Patch, PatchParams};
use keelson_component::Requeue;
use serde_json::json;

use super::{finished, has_finalizer, tracking, Controller, TRACKING_FINALIZER};
use crate::common::owner::{claim, controller_of, ClaimResult};
use crate::common::pods;

impl Controller {
    /// The live Job controlling `pod`, or for a pod without a controller the Jobs whose
    /// selector matches it (they may adopt it).
    pub(super) fn jobs_of(&self, pod: &Pod) -> Vec<Arc<Job>> {
        let ns = pod.metadata.namespace.as_deref();
        match controller_of(&pod.metadata) {
            Some(r) if r.kind == "Job" => self
                .jobs
                .get_by_name(ns, &r.name)
                .filter(|j| j.uid() == Some(r.uid.as_str()))
                .into_iter()
                .collect(),
            Some(_) => Vec::new(),
            None => self
                .jobs
                .list_namespace(ns.unwrap_or_default())
                .into_iter()
                .filter(|j| selector(j).is_some_and(|s| pods::selects(&s, &pod.metadata)))
                .collect(),
        }
    }

    /// A pod holding our finalizer whose Job is gone or finished must be released.
    fn check_orphan(&self, pod: &Pod, jobs: &[Arc<Job>]) {
        if has_finalizer(pod)
            && (controller_of(&pod.metadata).is_none()
                || jobs.iter().all(|j| finished(j).is_some()))
        {
            self.orphans.add(pod.key());
        }
    }

    pub(super) fn pod_added(&self, pod: &Pod) {
        let jobs = self.jobs_of(pod);
        for j in &jobs {
            if pod.metadata.deletion_timestamp.is_some() {
                self.expectations.deletion_observed(&j.key());
            } else {
                self.expectations.creation_observed(&j.key());
            }
            self.queue.add(j.key());
        }
        self.check_orphan(pod, &jobs);
    }

    pub(super) fn pod_updated(&self, old: &Pod, new: &Pod) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        let jobs = self.jobs_of(new);
        for j in &jobs {
            if old.metadata.deletion_timestamp.is_none()
                && new.metadata.deletion_timestamp.is_some()
            {
                self.expectations.deletion_observed(&j.key());
            }
            if has_finalizer(old) && !has_finalizer(new) {
                self.finalizers
                    .observed(&j.key(), new.uid().unwrap_or_default());
            }
            self.queue.add(j.key());
        }
        // A pod that changed controller concerns the old one too.
        for j in self.jobs_of(old) {
            self.queue.add(j.key());
        }
        self.check_orphan(new, &jobs);
    }

    pub(super) fn pod_deleted(&self, pod: &Pod) {
        for j in self.jobs_of(pod) {
            if pod.metadata.deletion_timestamp.is_none() {
                self.expectations.deletion_observed(&j.key());
            }
            self.finalizers
                .observed(&j.key(), pod.uid().unwrap_or_default());
            self.queue.add(j.key());
        }
    }

    /// Our pods: those controlled by the Job, after adopting matching orphans (with our
    /// finalizer) and releasing pods that no longer match.
    pub(super) async fn pods_for(&self, job: &Job) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let selector = selector(job).unwrap_or_else(LabelSelector::nothing);
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            let orphan = controller_of(&pod.metadata).is_none();
            if orphan && !pods::is_active(&pod) {
                continue;
            }
            if claim(job, &selector, pod.as_ref(), &api).await? != ClaimResult::Owned {
                continue;
            }
            if orphan && !has_finalizer(&pod) {
                // Adopted: track it like our own pods from now on.
                let patch = json!({"metadata": {"finalizers": [TRACKING_FINALIZER]}});
                match api
                    .patch(
                        pod.name(),
                        &PatchParams::default(),
                        &Patch::Strategic(patch),
                    )
                    .await
                {
                    Ok(p) => owned.push(Arc::new(p)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            owned.push(pod);
        }
        Ok(owned)
    }

    /// Remove the tracking finalizer from a pod whose Job is gone or finished.
    pub(super) async fn sync_orphan_pod(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(None);
        };
        if !has_finalizer(&pod) {
            return Ok(None);
        }
        if let Some(r) = controller_of(&pod.metadata) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(None);
            }
            let ns = key.namespace.as_deref().unwrap_or_default();
            let live = |j: &Job| j.uid() == Some(r.uid.as_str()) && finished(j).is_none();
            if self
                .jobs
                .get_by_name(Some(ns), &r.name)
                .is_some_and(|j| live(&j))
            {
                return Ok(None);
            }
            // The cache may be behind: ask the apiserver before letting the pod go.
            let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
            if api.get_opt(&r.name).await?.is_some_and(|j| live(&j)) {
                return Ok(None);
            }
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            key.namespace.as_deref().unwrap_or_default(),
        );
        tracking::remove_finalizer(&api, &pod).await?;
        Ok(None)
    }
}

fn selector(job: &Job) -> Option<LabelSelector> {
    let sel = job.spec.as_ref()?.selector.as_ref()?;
    LabelSelector::from_object(&serde_json::to_value(sel).ok()?).ok()
}
