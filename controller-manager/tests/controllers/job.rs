//! The Job and ttl-after-finished controllers against a real apiserver and etcd. No
//! kubelet runs: the tests finish pods themselves through the status subresource, as
//! a kubelet would (phase and terminated container state with an exit code).

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use keelson_client::{Api, Client, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{eventually_within, start};

const WAIT: Duration = Duration::from_secs(60);

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn job(name: &str, spec: Value) -> Job {
    let mut full = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}}});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": full})).unwrap()
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

async fn pods_of(client: &Client, job: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    api.list(&lp).await.map(|l| l.items).unwrap_or_default()
}

async fn active_pods(client: &Client, job: &str, want: usize) -> Vec<Pod> {
    eventually_within(WAIT, &format!("{want} active pods of {job}"), || async {
        let active: Vec<Pod> = pods_of(client, job)
            .await
            .into_iter()
            .filter(is_active)
            .collect();
        (active.len() == want).then_some(active)
    })
    .await
}

/// What a kubelet writes when the pod's only container exits with `code`.
async fn finish(client: &Client, pod: &Pod, code: i32) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": "Completed",
            "startedAt": now, "finishedAt": now}}}]}});
    let name = pod.metadata.name.as_deref().unwrap();
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn wait_condition(client: &Client, name: &str, type_: &str) -> Job {
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    eventually_within(WAIT, &format!("{name} {type_}"), || async {
        let j = api.get(name).await.ok()?;
        condition(&j, type_).is_some().then_some(j)
    })
    .await
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

async fn create(client: &Client, j: &Job) -> Job {
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), j).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_with_completions_and_parallelism() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    let created = create(
        &client,
        &job("pi", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    let uid = created.metadata.uid.clone().unwrap();

    // Finish one pod at a time; never more than `parallelism` run.
    let mut finished = 0;
    while finished < 3 {
        let want = (3 - finished).min(2);
        let active = active_pods(&client, "pi", want).await;
        for p in &active {
            let meta = &p.metadata;
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
            assert_eq!(labels["job-name"], "pi");
            assert!(meta
                .finalizers
                .as_ref()
                .unwrap()
                .contains(&FINALIZER.to_string()));
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        }
        finish(&client, &active[0], 0).await;
        finished += 1;
        let count = pods_of(&client, "pi")
            .await
            .iter()
            .filter(|p| is_active(p))
            .count();
        assert!(count <= 2, "{count} pods active");
    }

    let done = wait_condition(&client, "pi", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.failed, None);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert!(condition(
        &Job {
            status: Some(status.clone()),
            ..Default::default()
        },
        "SuccessCriteriaMet"
    )
    .is_some());
    let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.is_none() && uncounted.failed.is_none());
    // Exactly three pods ran, and each was released once counted.
    let pods = pods_of(&client, "pi").await;
    assert_eq!(pods.len(), 3);
    eventually_within(WAIT, "finalizers released", || async {
        let pods = pods_of(&client, "pi").await;
        pods.iter()
            .all(|p| {
                !p.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FINALIZER)
            })
            .then_some(())
    })
    .await;
    let reasons = event_reasons(&client, "pi").await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "SuccessfulCreate").count(),
        3
    );
    assert!(reasons.contains(&"Completed".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_when_the_backoff_limit_is_exceeded() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    create(
        &client,
        &job(
            "flaky",
            json!({"completions": 2, "parallelism": 2, "backoffLimit": 1}),
        ),
    )
    .await;
    for p in active_pods(&client, "flaky", 2).await {
        finish(&client, &p, 1).await;
    }
    let failed = wait_condition(&client, "flaky", "Failed").await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(condition(&failed, "FailureTarget").is_some());
    let status = failed.status.unwrap();
    assert_eq!(status.failed, Some(2));
    assert_eq!(status.active, None);
    assert!(event_reasons(&client, "flaky")
        .await
        .contains(&"BackoffLimitExceeded".to_string()));
    // No replacement pods after the failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods_of(&client, "flaky").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_reports_completed_indexes() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    create(&client, &job("idx", spec)).await;
    let mut pods = active_pods(&client, "idx", 3).await;
    let index = |p: &Pod| -> u32 {
        p.metadata.annotations.as_ref().unwrap()[INDEX]
            .parse()
            .unwrap()
    };
    pods.sort_by_key(index);
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(index(p), i as u32);
        assert_eq!(p.metadata.labels.as_ref().unwrap()[INDEX], i.to_string());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        let env = spec.containers[0].env.as_ref().unwrap();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .unwrap();
        let path = &var
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(path, &format!("metadata.annotations['{INDEX}']"));
    }
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let completed = |want: &'static str| {
        let api = api.clone();
        async move {
            eventually_within(WAIT, &format!("completedIndexes {want}"), || async {
                let j = api.get("idx").await.ok()?;
                (j.status?.completed_indexes.as_deref() == Some(want)).then_some(())
            })
            .await
        }
    };
    finish(&client, &pods[0], 0).await;
    completed("0").await;
    finish(&client, &pods[2], 0).await;
    completed("0,2").await;
    finish(&client, &pods[1], 0).await;
    completed("0-2").await;
    let done = wait_condition(&client, "idx", "Complete").await;
    assert_eq!(done.status.unwrap().succeeded, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fails_the_job_on_exit_code_42() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    let spec = json!({"completions": 2, "parallelism": 2, "backoffLimit": 6,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}});
    create(&client, &job("policy", spec)).await;
    let pods = active_pods(&client, "policy", 2).await;
    finish(&client, &pods[0], 42).await;
    let failed = wait_condition(&client, "policy", "Failed").await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("PodFailurePolicy"));
    let message = cond.message.clone().unwrap();
    assert!(
        message.contains("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    // The other pod was deleted (and released, so it is gone).
    eventually_within(WAIT, "the running pod gone", || async {
        let left = pods_of(&client, "policy").await;
        (left.len() == 1).then_some(())
    })
    .await;
    assert_eq!(failed.status.unwrap().failed, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    create(
        &client,
        &job(
            "slow",
            json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 4}),
        ),
    )
    .await;
    active_pods(&client, "slow", 2).await;
    let started = Instant::now();
    let failed = wait_condition(&client, "slow", "Failed").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        condition(&failed, "Failed").unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    eventually_within(WAIT, "pods deleted", || async {
        pods_of(&client, "slow").await.is_empty().then_some(())
    })
    .await;
    assert!(event_reasons(&client, "slow")
        .await
        .contains(&"DeadlineExceeded".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_job_runs_nothing_until_resumed() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    create(&client, &job("later", json!({"suspend": true}))).await;
    let suspended = wait_condition(&client, "later", "Suspended").await;
    assert!(suspended.status.unwrap().start_time.is_none());
    assert!(pods_of(&client, "later").await.is_empty());
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let resume = json!({"spec": {"suspend": false}});
    api.patch("later", &PatchParams::default(), &Patch::Merge(resume))
        .await
        .unwrap();
    let pods = active_pods(&client, "later", 1).await;
    eventually_within(WAIT, "Suspended False, JobResumed", || async {
        let j = api.get("later").await.ok()?;
        let status = j.status?;
        let c = status
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Suspended")?;
        (c.status == "False"
            && c.reason.as_deref() == Some("JobResumed")
            && status.start_time.is_some())
        .then_some(())
    })
    .await;
    finish(&client, &pods[0], 0).await;
    wait_condition(&client, "later", "Complete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_the_job() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    create(
        &client,
        &job("brief", json!({"ttlSecondsAfterFinished": 1})),
    )
    .await;
    let pods = active_pods(&client, "brief", 1).await;
    finish(&client, &pods[0], 0).await;
    wait_condition(&client, "brief", "Complete").await;
    // Foreground deletion: the Job is gone, or waits for the garbage collector.
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    eventually_within(WAIT, "the job deleted", || async {
        match api.get_opt("brief").await.unwrap() {
            None => Some(()),
            Some(j) => j.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
}

/// Pods deleted right after finishing (pod garbage collection, a user) are still
/// counted: the tracking finalizer keeps them until the Job has counted them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_pods_deleted_right_after_finishing() {
    let (_cluster, client, _cm) = start(&["job", "ttlafterfinished"]).await;
    create(
        &client,
        &job("gc", json!({"completions": 2, "parallelism": 2})),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for p in active_pods(&client, "gc", 2).await {
        finish(&client, &p, 0).await;
        let name = p.metadata.name.as_deref().unwrap();
        api.delete(
            name,
            &keelson_client::DeleteParams::default().grace_period(0),
        )
        .await
        .unwrap();
    }
    let done = wait_condition(&client, "gc", "Complete").await;
    assert_eq!(done.status.unwrap().succeeded, Some(2));
    eventually_within(WAIT, "pods gone", || async {
        pods_of(&client, "gc").await.is_empty().then_some(())
    })
    .await;
    let reasons = event_reasons(&client, "gc").await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "SuccessfulCreate").count(),
        2
    );
}
