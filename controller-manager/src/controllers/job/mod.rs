//! Job: run pods from the template until `completions` of them succeed (without
//! `completions`: until one succeeds and the others finish), at most `parallelism` at
//! a time, and fail the Job on `backoffLimit`, `activeDeadlineSeconds` or a
//! `podFailurePolicy` FailJob rule. Kubernetes' pkg/controller/job, tracking pods with
//! a finalizer so that counts stay exact when finished pods are deleted:
//!
//! 1. every pod is created with the `batch.kubernetes.io/job-tracking` finalizer;
//! 2. a finished pod is recorded by uid in `status.uncountedTerminatedPods` (Indexed
//!    Jobs: its index in `completedIndexes`) and that status is written;
//! 3. then its finalizer is removed, and 4. it moves into `succeeded`/`failed`.
//!
//! A crash between steps neither loses a pod nor counts it twice. A Job that reached
//! its goal or must fail first gets the interim `SuccessCriteriaMet`/`FailureTarget`
//! condition, its remaining pods are deleted, and `Complete`/`Failed` follows once no
//! pod is running, terminating or uncounted.
//!
//! [`ownership`] finds a Job's pods and routes pod events, [`manage`] creates and
//! deletes pods, [`tracking`] counts finished pods and writes status, [`indexes`] and
//! [`failure_policy`] hold the Indexed and podFailurePolicy rules.

mod failure_policy;
pub mod indexes;
mod manage;
mod ownership;
mod tracking;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{KubeObject, ObjectKey};
use keelson_component::{EventType, Queue, Requeue};

use crate::common::owner::controller_of;
use crate::common::{pods, Expectations};
use crate::Context;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// `spec.managedBy` of Jobs this controller syncs (unset means the same).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// The Job's `Complete` or `Failed` condition, if it is True.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Kubernetes' `isPodFailed`: Failed, or (unless only failed pods are replaced) being
/// deleted before it succeeded.
fn is_pod_failed(pod: &Pod, spec: &JobSpec) -> bool {
    phase(pod) == "Failed"
        || (!only_replace_failed(spec)
            && pod.metadata.deletion_timestamp.is_some()
            && phase(pod) != "Succeeded")
}

/// Whether a terminating pod is replaced only once it failed (podReplacementPolicy
/// Failed, implied by a podFailurePolicy).
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_failure_policy.is_some() || spec.pod_replacement_policy.as_deref() == Some("Failed")
}

fn indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Now, to the second: status times are written with second precision.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// The finishing condition a sync is working towards.
#[derive(Debug, Clone)]
struct Finish {
    /// SuccessCriteriaMet and FailureTarget are interim; Complete and Failed final.
    type_: &'static str,
    reason: String,
    message: String,
}

impl Finish {
    fn new(type_: &'static str, reason: &str, message: &str) -> Self {
        Finish {
            type_,
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }
    fn is_success(&self) -> bool {
        matches!(self.type_, "SuccessCriteriaMet" | "Complete")
    }
}

/// One sync's view of a Job: the copy whose status is being computed and its pods.
struct SyncCtx {
    key: ObjectKey,
    job: Job,
    spec: JobSpec,
    /// What the apiserver holds, to write only changes.
    written: Option<JobStatus>,
    pods: Vec<Arc<Pod>>,
    active: Vec<Arc<Pod>>,
    active_count: i32,
    ready: i32,
    terminating: i32,
    /// Pods whose finalizer removal is requested but not yet seen: already counted.
    expected_rm: HashSet<String>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    succeeded: i32,
    failed: i32,
    prev_indexes: BTreeSet<u32>,
    indexes: BTreeSet<u32>,
    finish: Option<Finish>,
    backoff: manage::BackoffRecord,
    now: Timestamp,
}

impl SyncCtx {
    fn status(&mut self) -> &mut JobStatus {
        self.job.status.get_or_insert_with(Default::default)
    }

    fn completions(&self) -> u32 {
        self.spec.completions.unwrap_or(0).max(0) as u32
    }

    /// Kubernetes' `ensureJobConditionStatus`: set a condition's status, reason and
    /// message (new times only when they change). Returns whether anything changed.
    fn ensure_condition(&mut self, type_: &str, status: &str, reason: &str, message: &str) -> bool {
        let now = Time(self.now);
        let new = JobCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        };
        let list = self.status().conditions.get_or_insert_with(Vec::new);
        match list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                let same = c.status == status
                    && c.reason.as_deref().unwrap_or_default() == reason
                    && c.message.as_deref().unwrap_or_default() == message;
                if !same {
                    *c = new;
                }
                !same
            }
            None if status != "False" => {
                list.push(new);
                true
            }
            None => false,
        }
    }
}

pub async fn run(ctx: Context) {
    let job_informer = ctx.informers.get::<Job>();
    let pod_informer = ctx.informers.get::<Pod>();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        jobs: job_informer.store(),
        pods: pod_informer.store(),
        expectations: Expectations::default(),
        finalizers: tracking::FinalizerExpectations::default(),
        backoff: manage::BackoffStore::default(),
        queue: Queue::new("job", &ctx.queue_metrics),
        orphans: Queue::new("job_orphan_pod", &ctx.queue_metrics),
    });

    let c = controller.clone();
    let (c2, c3) = (controller.clone(), controller.clone());
    job_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |j: Arc<Job>| c.queue.add(j.key()))
            .on_update(move |_, j: Arc<Job>| c2.queue.add(j.key()))
            .on_delete(move |j: Arc<Job>| {
                c3.queue.add(j.key());
                // Its pods can no longer be counted: release them.
                let ns = j.namespace().unwrap_or_default();
                for p in c3.pods.list_namespace(ns) {
                    if has_finalizer(&p)
                        && controller_of(&p.metadata)
                            .is_some_and(|r| Some(r.uid.as_str()) == j.uid())
                    {
                        c3.orphans.add(p.key());
                    }
                }
            }),
    );

    let (c, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
    pod_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| c.pod_added(&p))
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| c2.pod_updated(&old, &new))
            .on_delete(move |p: Arc<Pod>| c3.pod_deleted(&p)),
    );

    job_informer.wait_for_sync().await;
    pod_informer.wait_for_sync().await;
    let workers = ctx.options.concurrent_syncs;
    let (c, c2) = (controller.clone(), controller.clone());
    let jobs = controller.queue.clone().run(workers, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    let orphans = controller.orphans.clone().run(1, move |key| {
        let c = c2.clone();
        async move { c.sync_orphan_pod(&key).await }
    });
    tokio::join!(jobs, orphans);
}

struct Controller {
    ctx: Context,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    finalizers: tracking::FinalizerExpectations,
    backoff: manage::BackoffStore,
    queue: Queue<ObjectKey>,
    /// Pods whose tracking finalizer must go because their Job is gone or finished.
    orphans: Queue<ObjectKey>,
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(shared) = self.jobs.get(key) else {
            self.expectations.forget(key);
            self.finalizers.forget(key);
            self.backoff.remove(key);
            return Ok(None);
        };
        let Some(spec) = shared.spec.clone() else {
            return Ok(None);
        };
        if finished(&shared).is_some() {
            self.backoff.remove(key);
            return Ok(None);
        }
        if spec.managed_by.as_deref().is_some_and(|m| m != MANAGED_BY) {
            return Ok(None);
        }
        // Read expectations before the pods, so that a pod arriving in between only
        // defers work to the next sync.
        let satisfied = self.expectations.satisfied(key);
        let pods = self.pods_for(&shared).await?;
        let mut c = self.new_ctx(key, &shared, spec, pods);
        let mut requeue: Option<Duration> = None;

        if c.job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
            && !suspended(&c.spec)
        {
            c.status().start_time = Some(Time(c.now));
        }
        self.decide_failure(&mut c, &mut requeue);

        let mut manage_err = None;
        if c.finish.is_some() {
            let active = std::mem::take(&mut c.active);
            let (deleted_ready, deleted, err) = self.delete_pods(&c, &active, false).await;
            if deleted != c.active_count || !satisfied {
                // Pods may remain (or not be in the cache yet): decide again next sync.
                c.finish = None;
            }
            c.active_count -= deleted;
            c.terminating += deleted;
            c.ready -= deleted_ready;
            manage_err = err;
        } else {
            let managed = satisfied && c.job.metadata.deletion_timestamp.is_none();
            if managed {
                let (wait, err) = self.manage(&mut c).await;
                requeue = min_duration(requeue, wait);
                manage_err = err;
            }
            let complete = match c.spec.completions {
                None => c.succeeded > 0 && c.active_count == 0,
                Some(n) => c.succeeded >= n && c.active_count == 0,
            };
            if complete {
                c.finish = Some(Finish::new(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ));
            } else if managed {
                self.update_suspended(&mut c).await;
            }
        }
        let (active, ready, terminating) = (c.active_count, c.ready, c.terminating);
        let status = c.status();
        status.active = Some(active);
        status.ready = Some(ready);
        status.terminating = Some(terminating);

        self.track(&mut c).await?;
        match manage_err {
            Some(e) => Err(e),
            None => Ok(requeue),
        }
    }

    fn new_ctx(&self, key: &ObjectKey, job: &Job, spec: JobSpec, pods: Vec<Arc<Pod>>) -> SyncCtx {
        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        let status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut c = SyncCtx {
            key: key.clone(),
            job: job.clone(),
            written: job.status.clone(),
            active_count: active.len() as i32,
            ready: active.iter().filter(|p| pods::is_ready(p)).count() as i32,
            terminating: pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
                .count() as i32,
            active,
            expected_rm: self.finalizers.expected(key),
            uncounted_succeeded: uncounted
                .succeeded
                .unwrap_or_default()
                .into_iter()
                .collect(),
            uncounted_failed: uncounted.failed.unwrap_or_default().into_iter().collect(),
            succeeded: 0,
            failed: 0,
            prev_indexes: BTreeSet::new(),
            indexes: BTreeSet::new(),
            finish: None,
            backoff: manage::BackoffRecord::default(),
            now: now(),
            pods,
            spec,
        };
        // Finished pods not yet counted anywhere.
        let fresh = |p: &&Arc<Pod>, uncounted: &HashSet<String>| {
            let uid = p.uid().unwrap_or_default();
            has_finalizer(p)
                && !uncounted.contains(uid)
                && !c.expected_rm.contains(uid)
                && (!indexed(&c.spec) || indexes::valid(p, c.completions()).is_some())
        };
        let new_succeeded: Vec<&Arc<Pod>> = c
            .pods
            .iter()
            .filter(|p| fresh(p, &c.uncounted_succeeded) && phase(p) == "Succeeded")
            .collect();
        let new_failed: Vec<&Arc<Pod>> = c
            .pods
            .iter()
            .filter(|p| fresh(p, &c.uncounted_failed) && is_pod_failed(p, &c.spec))
            .collect();
        let counted_failures = new_failed
            .iter()
            .filter(|p| {
                failure_policy::evaluate(c.spec.pod_failure_policy.as_ref(), p)
                    != failure_policy::Action::Ignore
            })
            .count();
        c.succeeded = status.succeeded.unwrap_or(0)
            + (new_succeeded.len() + c.uncounted_succeeded.len()) as i32;
        c.failed =
            status.failed.unwrap_or(0) + (counted_failures + c.uncounted_failed.len()) as i32;
        c.backoff = self
            .backoff
            .next_record(key, &new_succeeded, &new_failed, c.now);
        if indexed(&c.spec) {
            let completions = c.completions();
            c.prev_indexes = indexes::parse(
                status.completed_indexes.as_deref().unwrap_or_default(),
                completions,
            );
            c.indexes = c.prev_indexes.clone();
            c.indexes.extend(
                c.pods
                    .iter()
                    .filter(|p| phase(p) == "Succeeded" && has_finalizer(p))
                    .filter_map(|p| indexes::valid(p, completions)),
            );
            c.succeeded = c.indexes.len() as i32;
        }
        c
    }

    /// Whether the Job must fail (or already met its success criteria), in Kubernetes'
    /// order: an interim condition already written, a FailJob rule, the backoff limit,
    /// the active deadline. Asks for a requeue at the deadline otherwise.
    fn decide_failure(&self, c: &mut SyncCtx, requeue: &mut Option<Duration>) {
        let existing = |t: &str| {
            conditions(&c.job)
                .iter()
                .find(|x| x.type_ == t && x.status == "True")
                .cloned()
        };
        if let Some(met) = existing("SuccessCriteriaMet") {
            c.finish = Some(Finish::new(
                "SuccessCriteriaMet",
                met.reason.as_deref().unwrap_or_default(),
                met.message.as_deref().unwrap_or_default(),
            ));
            return;
        }
        if let Some(target) = existing("FailureTarget") {
            c.finish = Some(Finish::new(
                "Failed",
                target.reason.as_deref().unwrap_or_default(),
                target.message.as_deref().unwrap_or_default(),
            ));
            return;
        }
        let fail_job = c
            .pods
            .iter()
            .filter(|p| is_pod_failed(p, &c.spec))
            .find_map(
                |p| match failure_policy::evaluate(c.spec.pod_failure_policy.as_ref(), p) {
                    failure_policy::Action::FailJob(m) => Some(m),
                    _ => None,
                },
            );
        if let Some(message) = fail_job {
            c.finish = Some(Finish::new("FailureTarget", "PodFailurePolicy", &message));
            return;
        }
        let backoff_limit = c.spec.backoff_limit.unwrap_or(6);
        let started = c
            .job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0);
        let deadline = c
            .spec
            .active_deadline_seconds
            .zip(started)
            .filter(|_| !suspended(&c.spec))
            .map(|(secs, start)| start + Duration::from_secs(secs.max(0) as u64));
        if c.failed > backoff_limit || manage::past_backoff_limit_on_failure(&c.spec, &c.pods) {
            c.finish = Some(Finish::new(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        } else if let Some(deadline) = deadline {
            if c.now >= deadline {
                c.finish = Some(Finish::new(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                ));
            } else {
                let left = Duration::try_from(deadline - c.now).unwrap_or_default();
                *requeue = min_duration(*requeue, Some(left));
            }
        }
    }

    /// The Suspended condition follows `spec.suspend`; resuming restarts the clock of
    /// `activeDeadlineSeconds`.
    async fn update_suspended(&self, c: &mut SyncCtx) {
        if suspended(&c.spec) {
            if c.ensure_condition("Suspended", "True", "JobSuspended", "Job suspended") {
                self.event(&c.job, EventType::Normal, "Suspended", "Job suspended")
                    .await;
            }
        } else if c.ensure_condition("Suspended", "False", "JobResumed", "Job resumed") {
            self.event(&c.job, EventType::Normal, "Resumed", "Job resumed")
                .await;
            let now = c.now;
            c.status().start_time = Some(Time(now));
        }
    }

    async fn event(&self, job: &Job, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(
                &keelson_component::events::reference(job),
                kind,
                reason,
                message,
            )
            .await;
    }
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
