//! The CronJob controller (with the Job controller) against a real apiserver and etcd.
//! Schedules fire on the minute, so one test waits for a single firing (at most about
//! a minute) and checks several CronJobs at once; the scheduling rules themselves are
//! unit-tested in `controllers/cronjob`. No kubelet runs: tests finish pods through
//! the status subresource.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Pod};
use keelson_client::{Api, Client, KubeObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{poll, start};

const POLL: Duration = Duration::from_millis(200);

const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

fn job_template() -> Value {
    json!({"spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}}}})
}

fn cronjob(name: &str, extra: Value) -> CronJob {
    let mut spec = json!({"schedule": "*/1 * * * *", "jobTemplate": job_template()});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// A Job the CronJob controls, as if it had created it earlier.
fn owned_job(cj: &CronJob, name: &str, spec: Value) -> Job {
    let mut full = job_template()["spec"].clone();
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
            "name": cj.name(), "uid": cj.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": full,
    }))
    .unwrap()
}

fn owned_by<'a>(jobs: &'a [Job], cj: &str) -> Vec<&'a Job> {
    jobs.iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.name == cj && r.controller == Some(true))
        })
        .collect()
}

async fn jobs(client: &Client) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default()).await.unwrap().items
}

async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Finish every pod of `job` with `code`, as a kubelet would.
async fn finish_pods(client: &Client, job: &str, code: i32) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let pods = poll(
        POLL,
        Duration::from_secs(30),
        &format!("pods of {job}"),
        || async {
            let items = api.list(&lp).await.ok()?.items;
            (!items.is_empty()).then_some(items)
        },
    )
    .await;
    let now = jiff::Timestamp::now().to_string();
    for p in pods {
        let status = json!({"status": {
            "phase": if code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}]}});
        api.patch_status(p.name(), &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }
}

fn finished(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// CronJob "should schedule jobs when suspended=false", "should not schedule jobs when
/// suspended", Forbid and Replace, all on the same firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_on_time_honouring_suspend_and_concurrency() {
    // Leave time to set everything up before the minute turns.
    let second = jiff::Timestamp::now().as_second().rem_euclid(60);
    if second > 40 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
    let (_cluster, client, _cm) = start(&["cronjob", "job"]).await;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let job_api: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    cjs.create(&pp, &cronjob("every", json!({}))).await.unwrap();
    cjs.create(&pp, &cronjob("paused", json!({"suspend": true})))
        .await
        .unwrap();
    // Forbid and Replace CronJobs with a Job still running from an earlier time.
    for (name, policy) in [("forbid", "Forbid"), ("replace", "Replace")] {
        let cj = cjs
            .create(&pp, &cronjob(name, json!({"concurrencyPolicy": policy})))
            .await
            .unwrap();
        let old = job_api
            .create(
                &pp,
                &owned_job(&cj, &format!("{name}-old"), json!({"suspend": true})),
            )
            .await
            .unwrap();
        let reference = json!({"apiVersion": "batch/v1", "kind": "Job", "name": old.name(),
            "namespace": "default", "uid": old.uid().unwrap()});
        let status = json!({"status": {"active": [reference]}});
        cjs.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }

    // The first minute boundary: a Job named for it, listed as active.
    let every = poll(POLL, Duration::from_secs(90), "a job for every", || async {
        let cj = cjs.get("every").await.ok()?;
        let status = cj.status.clone()?;
        (status.active.as_ref()?.len() == 1 && status.last_schedule_time.is_some()).then_some(cj)
    })
    .await;
    let status = every.status.unwrap();
    let scheduled = status.last_schedule_time.unwrap().0;
    assert_eq!(scheduled.as_second() % 60, 0);
    let name = format!("every-{}", scheduled.as_second() / 60);
    assert_eq!(
        status.active.unwrap()[0].name.as_deref(),
        Some(name.as_str())
    );
    let job = job_api.get(&name).await.unwrap();
    let annotations = job.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations[SCHEDULED].parse::<jiff::Timestamp>().unwrap(),
        scheduled
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    assert!(event_reasons(&client, "every")
        .await
        .contains(&"SuccessfulCreate".to_string()));

    // Replace: the running Job is deleted and the new one takes its place.
    let replace_job = format!("replace-{}", scheduled.as_second() / 60);
    poll(
        POLL,
        Duration::from_secs(20),
        "replace swapped its job",
        || async {
            let cj = cjs.get("replace").await.ok()?;
            let active = cj.status?.active?;
            let gone = job_api.get_opt("replace-old").await.ok()?.is_none();
            (gone && active.len() == 1 && active[0].name.as_deref() == Some(replace_job.as_str()))
                .then_some(())
        },
    )
    .await;

    // Forbid: nothing new while the old Job runs; suspended: nothing at all.
    poll(
        POLL,
        Duration::from_secs(20),
        "JobAlreadyActive",
        || async {
            let reasons = event_reasons(&client, "forbid").await;
            reasons
                .contains(&"JobAlreadyActive".to_string())
                .then_some(())
        },
    )
    .await;
    let all = jobs(&client).await;
    let forbid: Vec<&str> = owned_by(&all, "forbid").iter().map(|j| j.name()).collect();
    assert_eq!(forbid, ["forbid-old"]);
    assert!(owned_by(&all, "paused").is_empty());
    assert!(cjs
        .get("paused")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .last_schedule_time
        .is_none());

    // The Job finishes: it leaves the active list and sets lastSuccessfulTime.
    finish_pods(&client, &name, 0).await;
    poll(
        POLL,
        Duration::from_secs(30),
        "every's job done",
        || async {
            let status = cjs.get("every").await.ok()?.status?;
            (status.active.is_none() && status.last_successful_time.is_some()).then_some(())
        },
    )
    .await;
    assert!(event_reasons(&client, "every")
        .await
        .contains(&"SawCompletedJob".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let (_cluster, client, _cm) = start(&["cronjob", "job"]).await;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let job_api: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let limits =
        json!({"suspend": true, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0});
    let cj = cjs.create(&pp, &cronjob("hist", limits)).await.unwrap();
    for name in ["hist-1", "hist-2", "hist-3"] {
        job_api
            .create(&pp, &owned_job(&cj, name, json!({})))
            .await
            .unwrap();
        finish_pods(&client, name, 0).await;
        // Start times order the history: one Job per second at most.
        poll(
            POLL,
            Duration::from_secs(30),
            &format!("{name} complete"),
            || async {
                let j = job_api.get_opt(name).await.ok()??;
                finished(&j, "Complete").then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    job_api
        .create(&pp, &owned_job(&cj, "hist-bad", json!({"backoffLimit": 0})))
        .await
        .unwrap();
    finish_pods(&client, "hist-bad", 1).await;

    poll(
        POLL,
        Duration::from_secs(30),
        "only the newest success kept",
        || async {
            let all = jobs(&client).await;
            let left: Vec<&str> = owned_by(&all, "hist").iter().map(|j| j.name()).collect();
            (left == ["hist-3"]).then_some(())
        },
    )
    .await;
    let reasons = event_reasons(&client, "hist").await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "SuccessfulDelete").count(),
        3,
        "{reasons:?}"
    );
    let status = cjs.get("hist").await.unwrap().status.unwrap();
    assert!(status.last_successful_time.is_some());
    assert!(status.last_schedule_time.is_none());
}
