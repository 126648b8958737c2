//! Counting finished pods exactly (Kubernetes' `trackJobStatusAndRemoveFinalizers`):
//! record them as uncounted, remove their finalizers, move them into the counters,
//! then declare the Job finished when nothing is left in flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::{Api, KubeObject, ObjectKey, Patch, PatchParams, PostParams};
use keelson_component::EventType;
use serde_json::json;

use super::failure_policy::{self, Action};
use super::{
    has_finalizer, indexed, indexes, is_pod_failed, phase, Controller, Finish, SyncCtx,
    TRACKING_FINALIZER,
};

/// At most this many pods are in `uncountedTerminatedPods` at once (keeps the status
/// small and one big Job from starving the others).
const MAX_UNCOUNTED: usize = 500;

/// Pods whose finalizer removal a Job's sync requested and the pod informer has not
/// shown yet: they are counted already and must not be counted again.
#[derive(Clone, Default)]
pub struct FinalizerExpectations(Arc<Mutex<HashMap<ObjectKey, HashSet<String>>>>);

impl FinalizerExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HashSet<String>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn expect(&self, key: &ObjectKey, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.clone()).or_default().extend(uids);
    }
    pub fn observed(&self, key: &ObjectKey, uid: &str) {
        let mut map = self.lock();
        if let Some(set) = map.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                map.remove(key);
            }
        }
    }
    pub fn expected(&self, key: &ObjectKey) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

/// Remove our finalizer from `pod` (a pod already gone is fine).
pub async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> keelson_client::Result<()> {
    if !has_finalizer(pod) {
        return Ok(());
    }
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    match api
        .patch(
            pod.name(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

fn uid(p: &Pod) -> String {
    p.uid().unwrap_or_default().to_string()
}

/// The uncounted uids as two lists (in status order).
#[derive(Default)]
struct Uncounted {
    succeeded: Vec<String>,
    failed: Vec<String>,
}

impl Uncounted {
    fn len(&self) -> usize {
        self.succeeded.len() + self.failed.len()
    }

    /// Move the pods that no longer hold a finalizer into the counters.
    fn count_released(&mut self, status: &mut JobStatus, with_finalizer: &HashSet<String>) {
        let before = (self.succeeded.len(), self.failed.len());
        self.succeeded.retain(|u| with_finalizer.contains(u));
        self.failed.retain(|u| with_finalizer.contains(u));
        let succeeded = (before.0 - self.succeeded.len()) as i32;
        let failed = (before.1 - self.failed.len()) as i32;
        status.succeeded = Some(status.succeeded.unwrap_or(0) + succeeded);
        status.failed = Some(status.failed.unwrap_or(0) + failed);
    }

    fn store(&self, status: &mut JobStatus) {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: list(&self.succeeded),
            failed: list(&self.failed),
        });
    }
}

/// The status as the apiserver returns it: zero counters and empty lists omitted.
fn normalized(status: Option<&JobStatus>) -> JobStatus {
    let mut s = status.cloned().unwrap_or_default();
    for n in [&mut s.active, &mut s.succeeded, &mut s.failed] {
        if *n == Some(0) {
            *n = None;
        }
    }
    if s.completed_indexes.as_deref() == Some("") {
        s.completed_indexes = None;
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    let u = s
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    for list in [&mut u.succeeded, &mut u.failed] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    s
}

impl Controller {
    /// Count finished pods, release them, write status, and finish the Job when its
    /// finishing condition holds and no pod is left terminating or uncounted.
    pub(super) async fn track(&self, c: &mut SyncCtx) -> anyhow::Result<()> {
        let is_indexed = indexed(&c.spec);
        let completions = c.completions();
        let mut with_finalizer: HashSet<String> = c
            .pods
            .iter()
            .filter(|p| has_finalizer(p) && !c.expected_rm.contains(p.uid().unwrap_or_default()))
            .map(|p| uid(p))
            .collect();
        let stored = c
            .status()
            .uncounted_terminated_pods
            .clone()
            .unwrap_or_default();
        let mut uncounted = Uncounted {
            succeeded: stored.succeeded.unwrap_or_default(),
            failed: stored.failed.unwrap_or_default(),
        };
        uncounted.count_released(c.status(), &with_finalizer);

        let mut pods = c.pods.clone();
        if is_indexed {
            // Completed indexes are added in order.
            pods.sort_by_key(|p| indexes::of_pod(p));
        }
        let failing = c.finish.as_ref().is_some_and(|f| !f.is_success());
        let job_deleting = c.job.metadata.deletion_timestamp.is_some();
        let mut release = Vec::new();
        let mut new_indexes = Vec::new();
        let mut full = false;
        for pod in &pods {
            let id = uid(pod);
            if !has_finalizer(pod) || c.expected_rm.contains(&id) {
                continue; // counted in an earlier sync
            }
            let failed = is_pod_failed(pod, &c.spec);
            let succeeded = phase(pod) == "Succeeded";
            if !(job_deleting || c.finish.is_some() || succeeded || failed) {
                continue; // still running: keep tracking it
            }
            release.push(pod.clone());
            if succeeded && !c.uncounted_failed.contains(&id) {
                if is_indexed {
                    if let Some(i) =
                        indexes::valid(pod, completions).filter(|i| !c.prev_indexes.contains(i))
                    {
                        new_indexes.push(i);
                    }
                } else if !uncounted.succeeded.contains(&id) {
                    uncounted.succeeded.push(id);
                }
            } else if (failed || failing)
                && !uncounted.failed.contains(&id)
                && (!is_indexed || indexes::valid(pod, completions).is_some())
                && failure_policy::evaluate(c.spec.pod_failure_policy.as_ref(), pod)
                    != Action::Ignore
            {
                // When the Job fails, every pod not succeeded counts as failed.
                uncounted.failed.push(id);
            }
            if new_indexes.len() + uncounted.len() >= MAX_UNCOUNTED {
                full = true;
                break;
            }
        }
        if is_indexed {
            c.indexes.extend(new_indexes);
            let (done, total) = (indexes::format(&c.indexes), c.indexes.len() as i32);
            let status = c.status();
            status.completed_indexes = Some(done);
            status.succeeded = Some(total);
        }
        // The interim condition is written before any pod is let go, then the final one
        // is what this sync works towards.
        if let Some(f) = c.finish.clone() {
            match f.type_ {
                "FailureTarget" => {
                    c.ensure_condition("FailureTarget", "True", &f.reason, &f.message);
                    c.finish = Some(Finish {
                        type_: "Failed",
                        ..f
                    });
                }
                "SuccessCriteriaMet" => {
                    c.ensure_condition("SuccessCriteriaMet", "True", &f.reason, &f.message);
                    c.finish = Some(Finish {
                        type_: "Complete",
                        ..f
                    });
                }
                _ => {}
            }
        }
        uncounted.store(c.status());

        // 1. Record the finished pods.
        self.write_status(c).await?;
        self.backoff.commit(&c.key, c.backoff.clone());

        // 2. Let them go.
        let mut first_error = None;
        if !release.is_empty() {
            let ns = c.key.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            self.finalizers
                .expect(&c.key, release.iter().map(|p| uid(p)));
            let results =
                futures::future::join_all(release.iter().map(|p| remove_finalizer(&api, p))).await;
            for (pod, r) in release.iter().zip(results) {
                match r {
                    Ok(()) => {
                        with_finalizer.remove(&uid(pod));
                    }
                    Err(e) => {
                        // No update will come for this pod.
                        self.finalizers.observed(&c.key, &uid(pod));
                        first_error.get_or_insert(e);
                    }
                }
            }
        }

        // 3. Count them.
        uncounted.count_released(c.status(), &with_finalizer);
        uncounted.store(c.status());
        if let Some(e) = first_error {
            self.write_status(c).await?;
            return Err(anyhow::Error::from(e).context("removing job-tracking finalizers"));
        }

        // 4. Finish.
        let finished = !full && uncounted.len() == 0 && c.terminating == 0 && c.finish.is_some();
        if let Some(f) = c.finish.clone().filter(|_| finished) {
            c.ensure_condition(f.type_, "True", &f.reason, &f.message);
            if f.type_ == "Complete" {
                let now = c.now;
                c.status().completion_time = Some(Time(now));
            }
        }
        self.write_status(c).await?;
        if let Some(f) = c.finish.clone().filter(|_| finished) {
            self.record_finished(&c.job, &f, c.spec.completions).await;
        }
        Ok(())
    }

    async fn record_finished(&self, job: &Job, f: &Finish, completions: Option<i32>) {
        if f.type_ == "Complete" {
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if completions.is_some_and(|n| succeeded > n) {
                self.event(
                    job,
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                )
                .await;
            }
            self.event(job, EventType::Normal, "Completed", "Job completed")
                .await;
        } else {
            self.event(job, EventType::Warning, &f.reason, &f.message)
                .await;
        }
    }

    /// Write the computed status if it differs from the stored one. The write carries
    /// the resourceVersion, so a status computed from a stale cache is refused.
    async fn write_status(&self, c: &mut SyncCtx) -> anyhow::Result<()> {
        let new = normalized(c.job.status.as_ref());
        if new == normalized(c.written.as_ref()) {
            return Ok(());
        }
        c.job.status = Some(new);
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            c.key.namespace.as_deref().unwrap_or_default(),
        );
        let updated = api
            .replace_status(c.job.name(), &PostParams::default(), &c.job)
            .await?;
        c.job.metadata = updated.metadata;
        c.written = updated.status;
        Ok(())
    }
}
