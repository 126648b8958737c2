//! Creating and deleting a Job's pods: how many should run, which to delete first,
//! the pod each completion index gets, and the back-off after failures (10 s doubling
//! to 6 min since the last failure, reset by a success).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, PostParams};
use keelson_component::EventType;

use super::{
    indexed, indexes, only_replace_failed, phase, suspended, Controller, SyncCtx,
    TRACKING_FINALIZER,
};
use crate::common::owner::controller_ref;
use crate::common::pods::{self, deletion_order};
use crate::common::slowstart::slow_start;

/// Most pods created or deleted in one sync.
const MAX_PER_SYNC: i32 = 500;
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Failures since the last success, and when the latest one happened.
#[derive(Debug, Clone, Default)]
pub struct BackoffRecord {
    failures: u32,
    last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// How long pod creation must still wait.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures > 0) else {
            return Duration::ZERO;
        };
        let mut delay = BACKOFF_BASE;
        for _ in 1..self.failures {
            delay = (delay * 2).min(BACKOFF_MAX);
        }
        let elapsed = Duration::try_from(now - last).unwrap_or_default();
        delay.saturating_sub(elapsed)
    }
}

/// Back-off records per Job, in memory (as in Kubernetes).
#[derive(Default)]
pub struct BackoffStore(Mutex<HashMap<ObjectKey, BackoffRecord>>);

impl BackoffStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, BackoffRecord>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record once the newly finished pods are counted (not stored yet: see
    /// [`BackoffStore::commit`]).
    pub fn next_record(
        &self,
        key: &ObjectKey,
        succeeded: &[&Arc<Pod>],
        failed: &[&Arc<Pod>],
        now: Timestamp,
    ) -> BackoffRecord {
        let mut rec = self.lock().get(key).cloned().unwrap_or_default();
        let mut failed_at: Vec<Timestamp> = failed.iter().map(|p| finish_time(p, now)).collect();
        failed_at.sort();
        let last_success = succeeded.iter().map(|p| finish_time(p, now)).max();
        if let Some(success) = last_success {
            // Only failures after the latest success count.
            failed_at.retain(|t| *t > success);
            rec = BackoffRecord::default();
        }
        if let Some(last) = failed_at.last() {
            rec.failures += failed_at.len() as u32;
            rec.last_failure = Some(*last);
        }
        rec
    }

    pub fn commit(&self, key: &ObjectKey, rec: BackoffRecord) {
        self.lock().insert(key.clone(), rec);
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

/// When a pod finished: its containers' latest finish, else its deletion, else now.
fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// restartPolicy OnFailure restarts containers in place: their restarts count against
/// `backoffLimit` (Kubernetes' `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    match spec.backoff_limit.unwrap_or(6) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

impl Controller {
    /// Create or delete pods towards the number that should run. Returns how long pod
    /// creation must back off (if it must) and the first error.
    pub(super) async fn manage(
        &self,
        c: &mut SyncCtx,
    ) -> (Option<Duration>, Option<anyhow::Error>) {
        if suspended(&c.spec) {
            let active = std::mem::take(&mut c.active);
            let (ready, deleted, err) = self.delete_pods(c, &active, true).await;
            c.active_count -= deleted;
            c.terminating += deleted;
            c.ready -= ready;
            return (None, err);
        }
        let parallelism = c.spec.parallelism.unwrap_or(1).max(0);
        let want = match c.spec.completions {
            // Work queue: once one pod succeeded, start no more and let the rest finish.
            None if c.succeeded > 0 => c.active_count,
            None => parallelism,
            Some(n) => (n - c.succeeded).clamp(0, parallelism),
        };
        let mut victims = removal_candidates(c, (c.active_count - want).max(0) as usize);
        victims.truncate(MAX_PER_SYNC as usize);
        if !victims.is_empty() {
            let (ready, deleted, err) = self.delete_pods(c, &victims, true).await;
            c.active_count -= deleted;
            c.terminating += deleted;
            c.ready -= ready;
            return (None, err);
        }
        let terminating = if only_replace_failed(&c.spec) {
            c.terminating
        } else {
            0
        };
        let diff = want - terminating - c.active_count;
        if diff <= 0 {
            return (None, None);
        }
        let wait = c.backoff.remaining(c.now);
        if !wait.is_zero() {
            return (Some(wait.max(Duration::from_secs(1))), None);
        }
        let (count, todo) = if indexed(&c.spec) {
            let running: BTreeSet<u32> = c
                .active
                .iter()
                .filter_map(|p| indexes::valid(p, c.completions()))
                .collect();
            let todo = indexes::first_pending(
                &c.indexes,
                &running,
                c.completions(),
                diff.min(MAX_PER_SYNC) as usize,
            );
            (todo.len(), todo)
        } else {
            (diff.min(MAX_PER_SYNC) as usize, Vec::new())
        };
        (None, self.create_pods(c, count, &todo).await)
    }

    async fn create_pods(
        &self,
        c: &mut SyncCtx,
        count: usize,
        todo: &[u32],
    ) -> Option<anyhow::Error> {
        let ns = c.key.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let template = pod_template(&c.spec);
        self.expectations.expect(&c.key, count as i64, 0);
        let job = &c.job;
        let outcome = slow_start(count, |i| {
            let pod = new_pod(job, &template, &ns, todo.get(i).copied());
            let api = &api;
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .await;
        for pod in &outcome.created {
            self.event(
                &c.job,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created pod: {}", pod.name()),
            )
            .await;
        }
        c.active_count += outcome.created.len() as i32;
        for _ in 0..outcome.errors.len() + outcome.skipped {
            // These will never be seen by the informer.
            self.expectations.creation_observed(&c.key);
        }
        let e = outcome.errors.into_iter().next()?;
        self.event(
            &c.job,
            EventType::Warning,
            "FailedCreate",
            &format!("Error creating: {e}"),
        )
        .await;
        Some(e.into())
    }

    /// Delete pods. `release`: remove our finalizer first, so that they are not counted
    /// as failed (pods the Job no longer wants), and track the deletions as expected.
    /// Returns the ready pods deleted, the pods deleted and the first error.
    pub(super) async fn delete_pods(
        &self,
        c: &SyncCtx,
        victims: &[Arc<Pod>],
        release: bool,
    ) -> (i32, i32, Option<anyhow::Error>) {
        let key = &c.key;
        if victims.is_empty() {
            return (0, 0, None);
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            key.namespace.as_deref().unwrap_or_default(),
        );
        if release {
            self.expectations.expect(key, 0, victims.len() as i64);
        }
        let results = futures::future::join_all(victims.iter().map(|p| {
            let api = &api;
            async move {
                if release {
                    super::tracking::remove_finalizer(api, p).await?;
                }
                match api.delete(p.name(), &DeleteParams::default()).await {
                    Err(e) if !e.is_not_found() => Err(e),
                    _ => Ok(()),
                }
            }
        }))
        .await;
        let (mut ready, mut deleted, mut error) = (0, 0, None);
        for (pod, r) in victims.iter().zip(results) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    ready += pods::is_ready(pod) as i32;
                    let msg = format!("Deleted pod: {}", pod.name());
                    self.event(&c.job, EventType::Normal, "SuccessfulDelete", &msg)
                        .await;
                }
                Err(e) => {
                    if release {
                        self.expectations.deletion_observed(key);
                    }
                    let msg = format!("Error deleting: {e}");
                    self.event(&c.job, EventType::Warning, "FailedDelete", &msg)
                        .await;
                    error.get_or_insert(anyhow::Error::from(e));
                }
            }
        }
        (ready, deleted, error)
    }
}

/// Active pods to delete: for Indexed Jobs every pod with a duplicate, invalid or
/// already completed index; then the least advanced pods, until `at_least`.
fn removal_candidates(c: &SyncCtx, at_least: usize) -> Vec<Arc<Pod>> {
    let mut sorted = c.active.clone();
    sorted.sort_by(|a, b| deletion_order(a, b));
    let (mut remove, mut keep) = (Vec::new(), Vec::new());
    if indexed(&c.spec) {
        // Keep the most advanced pod of each index that still needs one.
        let mut seen = HashSet::new();
        for p in sorted.into_iter().rev() {
            match indexes::valid(&p, c.completions()) {
                Some(i) if !c.indexes.contains(&i) && seen.insert(i) => keep.push(p),
                _ => remove.push(p),
            }
        }
        keep.reverse();
    } else {
        keep = sorted;
    }
    let more = at_least.saturating_sub(remove.len()).min(keep.len());
    remove.extend(keep.drain(..more));
    remove
}

/// The template pods are made from: with our finalizer and, for Indexed Jobs, the
/// `JOB_COMPLETION_INDEX` variable (from the index annotation) in every container.
fn pod_template(spec: &JobSpec) -> PodTemplateSpec {
    let mut t = spec.template.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    if indexed(spec) {
        if let Some(ps) = t.spec.as_mut() {
            let containers = ps
                .init_containers
                .iter_mut()
                .flatten()
                .chain(ps.containers.iter_mut());
            for container in containers {
                let env = container.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                    env.push(EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: format!(
                                    "metadata.annotations['{}']",
                                    indexes::INDEX_KEY
                                ),
                            }),
                            ..Default::default()
                        }),
                    });
                }
            }
        }
    }
    t
}

/// One pod of `job`; an Indexed Job's pod carries its index (annotation and label),
/// hostname `<job>-<index>` and generateName `<job>-<index>-`.
fn new_pod(job: &Job, template: &PodTemplateSpec, ns: &str, index: Option<u32>) -> Pod {
    let name = job.name();
    let prefix = match index {
        None => pods::generate_name_prefix(name),
        Some(i) => {
            let suffix = format!("-{i}-");
            let keep = name.len().min(58usize.saturating_sub(suffix.len()));
            format!("{}{suffix}", &name[..keep])
        }
    };
    let mut pod = pods::from_template(template, ns, controller_ref(job), &prefix, None);
    if let Some(i) = index {
        let value = i.to_string();
        let meta = &mut pod.metadata;
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(indexes::INDEX_KEY.into(), value.clone());
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(indexes::INDEX_KEY.into(), value);
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn backoff_doubles_and_resets_on_success() {
        let store = BackoffStore::default();
        let key = ObjectKey::new(Some("ns"), "j");
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let failed = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Failed"}}));
        let rec = store.next_record(&key, &[], &[&failed], t0);
        assert_eq!(rec.remaining(t0), Duration::from_secs(10));
        store.commit(&key, rec);
        let t1 = t0 + Duration::from_secs(5);
        let rec = store.next_record(&key, &[], &[&failed], t1);
        assert_eq!(rec.remaining(t1), Duration::from_secs(20));
        store.commit(&key, rec);
        let ok = pod(json!({"metadata": {"name": "b"}, "status": {"phase": "Succeeded"}}));
        let rec = store.next_record(&key, &[&ok], &[], t1);
        assert_eq!(rec.remaining(t1), Duration::ZERO);
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "work", "namespace": "ns", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        let spec = job.spec.clone().unwrap();
        let p = new_pod(&job, &pod_template(&spec), "ns", Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("work-2-"));
        assert_eq!(p.metadata.annotations.unwrap()[indexes::INDEX_KEY], "2");
        assert_eq!(
            p.metadata.finalizers.unwrap(),
            vec![TRACKING_FINALIZER.to_string()]
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    }
}
