//! TTL after finished: delete a Job `ttlSecondsAfterFinished` after its Complete or
//! Failed condition became true (Kubernetes' ttl-after-finished controller). The Job
//! is deleted with Foreground propagation, as Kubernetes does, so its pods go first.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Preconditions};
use keelson_component::{Queue, Requeue};

use super::job::finished;
use crate::Context;

pub async fn run(ctx: Context) {
    let informer = ctx.informers.get::<Job>();
    let queue: Queue<ObjectKey> = Queue::new("ttl_jobs_to_delete", &ctx.queue_metrics);
    let (q, q2) = (queue.clone(), queue.clone());
    // Only finished Jobs with a TTL are of interest.
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |j: Arc<Job>| {
                if expires_at(&j).is_some() {
                    q.add(j.key())
                }
            })
            .on_update(move |_, j: Arc<Job>| {
                if expires_at(&j).is_some() {
                    q2.add(j.key())
                }
            }),
    );
    informer.wait_for_sync().await;
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        jobs: informer.store(),
    });
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = controller.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

/// When a finished Job with a TTL expires; `None` for any other Job.
fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished_at = finished(job)?.last_transition_time.as_ref()?.0;
    Some(finished_at + Duration::from_secs(ttl.max(0) as u64))
}

struct Controller {
    ctx: Context,
    jobs: Store<Job>,
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(job) = self.jobs.get(key) else {
            return Ok(None);
        };
        let Some(at) = expires_at(&job) else {
            return Ok(None);
        };
        if let Some(left) = time_left(at) {
            return Ok(Some(left));
        }
        // The cached Job may be stale (its TTL changed): decide on a fresh read.
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            key.namespace.as_deref().unwrap_or_default(),
        );
        let Some(fresh) = api.get_opt(&key.name).await? else {
            return Ok(None);
        };
        let Some(at) = expires_at(&fresh) else {
            return Ok(None);
        };
        if let Some(left) = time_left(at) {
            return Ok(Some(left));
        }
        let params = DeleteParams::foreground().preconditions(Preconditions {
            uid: fresh.uid().map(str::to_string),
            resource_version: None,
        });
        match api.delete(&key.name, &params).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(None),
        }
    }
}

fn time_left(at: Timestamp) -> Option<Duration> {
    let now = Timestamp::now();
    (at > now).then(|| Duration::try_from(at - now).unwrap_or_default())
}
