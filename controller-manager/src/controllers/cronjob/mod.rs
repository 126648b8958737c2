//! CronJob (Kubernetes' cronjob controller v2): create a Job from `jobTemplate` at each
//! time of `schedule` (in `timeZone`), named `<cronjob>-<minutes since the epoch>` so
//! that a time is never run twice, honouring `suspend`, `startingDeadlineSeconds` and
//! `concurrencyPolicy`; keep `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`; delete finished Jobs beyond the history limits.
//!
//! No polling: each sync asks to be looked at again just after the next schedule time.
//! [`rules`] holds the scheduling rules as pure functions; [`schedule`] parses cron.

pub mod rules;
pub mod schedule;

use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, PostParams};
use keelson_component::events::reference;
use keelson_component::{EventType, Queue, Requeue};

pub use rules::{decide, history_to_delete, job_for, job_name, Decision, SCHEDULED_TIMESTAMP};

use super::job::finished;
use crate::common::owner::controller_of;
use crate::Context;

pub async fn run(ctx: Context) {
    let cj_informer = ctx.informers.get::<CronJob>();
    let job_informer = ctx.informers.get::<Job>();
    let queue: Queue<ObjectKey> = Queue::new("cronjob", &ctx.queue_metrics);
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    cj_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |c: Arc<CronJob>| q1.add(c.key()))
            .on_update(move |_, c: Arc<CronJob>| q2.add(c.key()))
            .on_delete(move |c: Arc<CronJob>| q3.add(c.key())),
    );
    // A Job's change concerns the CronJob controlling it.
    let owner = |j: &Job| {
        controller_of(&j.metadata)
            .filter(|r| r.kind == "CronJob")
            .map(|r| ObjectKey::new(j.namespace(), &r.name))
    };
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    job_informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |j: Arc<Job>| owner(&j).into_iter().for_each(|k| q1.add(k)))
            .on_update(move |_, j: Arc<Job>| owner(&j).into_iter().for_each(|k| q2.add(k)))
            .on_delete(move |j: Arc<Job>| owner(&j).into_iter().for_each(|k| q3.add(k))),
    );
    cj_informer.wait_for_sync().await;
    job_informer.wait_for_sync().await;
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        cronjobs: cj_informer.store(),
        jobs: job_informer.store(),
        local: TimeZone::system(),
    });
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = controller.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

struct Controller {
    ctx: Context,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    local: TimeZone,
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(shared) = self.cronjobs.get(key) else {
            return Ok(None);
        };
        let ns = key.namespace.as_deref().unwrap_or_default();
        let job_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(ns)
            .into_iter()
            .filter(|j| {
                controller_of(&j.metadata).is_some_and(|r| Some(r.uid.as_str()) == shared.uid())
            })
            .collect();
        let mut cj = (*shared).clone();
        let original = cj.status.clone();
        self.reconcile_active(&mut cj, &jobs, &job_api).await?;
        if cj.metadata.deletion_timestamp.is_some() {
            self.write_status(&cj, &original).await?;
            return Ok(None);
        }

        let decision = decide(&cj, Timestamp::now(), &self.local);
        for (kind, reason, message) in &decision.events {
            self.event(&cj, *kind, reason, message).await;
        }
        let mut result = Ok(decision.requeue);
        if let Some(scheduled) = decision.start {
            if let Err(e) = self
                .start(&mut cj, scheduled, decision.replace_active, &job_api)
                .await
            {
                result = Err(e);
            }
        }
        for job in history_to_delete(&cj, &jobs) {
            self.delete_job(&mut cj, &job, &job_api).await;
        }
        self.write_status(&cj, &original).await?;
        result
    }

    /// Bring `status.active` in line with the Jobs: drop finished and vanished ones,
    /// note the latest success.
    async fn reconcile_active(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
        api: &Api<Job>,
    ) -> anyhow::Result<()> {
        let in_active =
            |cj: &CronJob, uid: Option<&str>| active(cj).iter().any(|r| r.uid.as_deref() == uid);
        for j in jobs {
            let listed = in_active(cj, j.uid());
            let done = finished(j);
            if !listed && done.is_none() {
                // Maybe our cache of the CronJob is behind its status.
                let fresh = Api::<CronJob>::namespaced(
                    self.ctx.client.clone(),
                    cj.namespace().unwrap_or_default(),
                )
                .get_opt(cj.name())
                .await?;
                match fresh {
                    Some(f) if in_active(&f, j.uid()) => cj.status = f.status,
                    _ => {
                        let msg = format!(
                            "Saw a job that the controller did not create or forgot: {}",
                            j.name()
                        );
                        self.event(cj, EventType::Warning, "UnexpectedJob", &msg)
                            .await;
                    }
                }
            } else if let (true, Some(c)) = (listed, done) {
                let msg = format!("Saw completed job: {}, status: {}", j.name(), c.type_);
                remove_active(cj, j.uid());
                self.event(cj, EventType::Normal, "SawCompletedJob", &msg)
                    .await;
            }
            if done.is_some_and(|c| c.type_ == "Complete") {
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(Default::default);
                if completed.is_some()
                    && status.last_successful_time.as_ref().map(|t| t.0)
                        < completed.as_ref().map(|t| t.0)
                {
                    status.last_successful_time = completed;
                }
            }
        }
        // Listed Jobs the cache does not know: gone for good only if the apiserver agrees.
        for r in active(cj).to_vec() {
            if jobs.iter().any(|j| j.uid() == r.uid.as_deref()) {
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            if api.get_opt(&name).await?.is_none() {
                remove_active(cj, r.uid.as_deref());
                self.event(
                    cj,
                    EventType::Normal,
                    "MissingJob",
                    &format!("Active job went missing: {name}"),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Create the Job for `scheduled` (after deleting the active ones for Replace) and
    /// record it in the status.
    async fn start(
        &self,
        cj: &mut CronJob,
        scheduled: Timestamp,
        replace: bool,
        api: &Api<Job>,
    ) -> anyhow::Result<()> {
        if replace {
            for r in active(cj).to_vec() {
                let name = r.name.clone().unwrap_or_default();
                match api.get_opt(&name).await? {
                    Some(job) if !self.delete_job(cj, &job, api).await => {
                        anyhow::bail!("could not replace job {name}");
                    }
                    Some(_) => {}
                    None => remove_active(cj, r.uid.as_deref()),
                }
            }
        }
        let want = job_for(cj, scheduled);
        let job = match api.create(&PostParams::default(), &want).await {
            Ok(job) => {
                self.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {}", job.name()),
                )
                .await;
                job
            }
            Err(e) if e.is_already_exists() => {
                // Created before but not recorded (or by someone else: leave it be).
                let Some(job) = api.get_opt(want.name()).await? else {
                    return Ok(());
                };
                let ours =
                    controller_of(&job.metadata).is_some_and(|r| Some(r.uid.as_str()) == cj.uid());
                if !ours || active(cj).iter().any(|r| r.uid.as_deref() == job.uid()) {
                    return Ok(());
                }
                job
            }
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                return Err(e.into());
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference(&job));
        status.last_schedule_time = Some(Time(scheduled));
        Ok(())
    }

    /// Delete a Job (Background propagation) and drop it from the active list.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job, api: &Api<Job>) -> bool {
        match api.delete(job.name(), &DeleteParams::background()).await {
            Err(e) if !e.is_not_found() => {
                self.event(
                    cj,
                    EventType::Warning,
                    "FailedDelete",
                    &format!("Deleted job: {e}"),
                )
                .await;
                false
            }
            _ => {
                remove_active(cj, job.uid());
                self.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted job {}", job.name()),
                )
                .await;
                true
            }
        }
    }

    async fn write_status(
        &self,
        cj: &CronJob,
        original: &Option<CronJobStatus>,
    ) -> anyhow::Result<()> {
        let mut status = cj.status.clone().unwrap_or_default();
        if status.active.as_ref().is_some_and(Vec::is_empty) {
            status.active = None;
        }
        if Some(&status) == original.as_ref()
            || (original.is_none() && status == CronJobStatus::default())
        {
            return Ok(());
        }
        let mut updated = cj.clone();
        updated.status = Some(status);
        let api: Api<CronJob> =
            Api::namespaced(self.ctx.client.clone(), cj.namespace().unwrap_or_default());
        match api
            .replace_status(cj.name(), &PostParams::default(), &updated)
            .await
        {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn event(&self, cj: &CronJob, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(&reference(cj), kind, reason, message)
            .await;
    }
}

fn active(cj: &CronJob) -> &[k8s_openapi::api::core::v1::ObjectReference] {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_deref())
        .unwrap_or_default()
}

fn remove_active(cj: &mut CronJob, uid: Option<&str>) {
    if let Some(list) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        list.retain(|r| r.uid.as_deref() != uid);
    }
}
