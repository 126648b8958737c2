//! PodDisruptionBudgets against a real apiserver and etcd: the disruption controller
//! keeps their status true to the pods, and `pods/eviction` spends it, refuses with 429
//! when it is spent, and waits for the controller after the budget changes.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_client::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{create, eventually, mark_ready, owned_pods, start};

fn replicaset(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
            }
        }
    })
}

fn budget(name: &str, app: &str, bound: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": app}}});
    spec.as_object_mut()
        .unwrap()
        .extend(bound.as_object().unwrap().clone());
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec})
}

async fn evict(pods: &Api<Pod>, name: &str, dry_run: bool) -> keelson_client::Result<Value> {
    let mut eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}});
    if dry_run {
        eviction["deleteOptions"] = json!({"dryRun": ["All"]});
    }
    pods.create_subresource("eviction", name, &PostParams::default(), &eviction)
        .await
}

/// Pods of the ReplicaSet `uid`, all marked Running and Ready; waits for `n` of them.
async fn ready_pods(pods: &Api<Pod>, uid: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = eventually(&format!("{n} pods"), || async {
        let p = owned_pods(pods, uid).await;
        (p.len() == n).then(|| p.into_iter().filter_map(|p| p.metadata.name).collect())
    })
    .await;
    for name in &names {
        mark_ready(pods, name).await.unwrap();
    }
    names
}

/// `(expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed)` once the
/// controller has seen generation `generation`.
async fn status_is(pdbs: &Api<PodDisruptionBudget>, generation: i64, want: (i32, i32, i32, i32)) {
    eventually(
        &format!("budget status {want:?} at generation {generation}"),
        || async {
            let s = pdbs.get("web").await.ok()?.status?;
            let got = (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed,
            );
            (s.observed_generation == Some(generation) && got == want).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_spends_the_budget_the_controller_keeps() {
    let (_cluster, client, _cm) = start(&["replicaset", "disruption"]).await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = create(&rss, replicaset("web", 3)).await;
    let uid = rs.metadata.uid.unwrap();
    let names = ready_pods(&pods, &uid, 3).await;

    let _: PodDisruptionBudget =
        create(&pdbs, budget("web", "web", json!({"minAvailable": 2}))).await;
    status_is(&pdbs, 1, (3, 2, 3, 1)).await;
    let cond = &pdbs
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );

    // A dry run spends nothing and deletes nothing.
    evict(&pods, &names[0], true).await.unwrap();
    assert!(pods.get(&names[0]).await.is_ok());
    assert_eq!(
        pdbs.get("web")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        1
    );

    // The one allowed disruption: the pod goes, the budget is spent at once.
    let ok = evict(&pods, &names[0], false).await.unwrap();
    assert_eq!(ok["status"], "Success");
    // (Its `disruptedPods` entry lasts only until the controller sees the pod go,
    // which may already have happened: the unit tests check the entry.)
    let spent = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(spent.disruptions_allowed, 0);
    eventually("the evicted pod gone", || async {
        pods.get(&names[0]).await.err().filter(|e| e.is_not_found())
    })
    .await;

    // The next one is refused while the replacement is not ready.
    let refused = evict(&pods, &names[1], false).await.unwrap_err();
    let status = refused.api_error().expect("a Status");
    assert_eq!(status.code, 429, "{refused}");
    assert_eq!(
        status.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(status.causes[0].reason, "DisruptionBudget");
    assert!(
        status.causes[0]
            .message
            .starts_with("The disruption budget web needs 2 healthy pods"),
        "{:?}",
        status.causes
    );
    assert!(
        pods.get(&names[1]).await.is_ok(),
        "a refused eviction deletes nothing"
    );

    // The ReplicaSet replaces the pod; once it is ready the budget is back.
    ready_pods(&pods, &uid, 3).await;
    status_is(&pdbs, 1, (3, 2, 3, 1)).await;

    // A changed budget: evictions wait for the controller, then follow the new one.
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 3}})),
    )
    .await
    .unwrap();
    status_is(&pdbs, 2, (3, 3, 3, 0)).await;
    assert_eq!(
        evict(&pods, &names[1], false).await.unwrap_err().code(),
        Some(429)
    );
    // maxUnavailable counts against the ReplicaSet's scale: 34% of 3 rounds up to 2.
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": null, "maxUnavailable": "34%"}})),
    )
    .await
    .unwrap();
    status_is(&pdbs, 3, (3, 1, 3, 2)).await;
    evict(&pods, &names[1], false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_disrupt_nothing_go_without_asking() {
    let (_cluster, client, _cm) = start(&["disruption"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b", "c"] {
        let _: Pod = create(
            &pods,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "bare"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}),
        )
        .await;
    }
    mark_ready(&pods, "a").await.unwrap();
    mark_ready(&pods, "b").await.unwrap();
    // "c" stays Pending. An integer minAvailable needs no controllers: 2 of 3 healthy.
    let _: PodDisruptionBudget =
        create(&pdbs, budget("web", "bare", json!({"minAvailable": 2}))).await;
    status_is(&pdbs, 1, (3, 2, 2, 0)).await;
    assert_eq!(
        evict(&pods, "a", false).await.unwrap_err().code(),
        Some(429)
    );
    // A Pending pod disrupts nothing.
    evict(&pods, "c", false).await.unwrap();
    assert!(pods.get("c").await.unwrap_err().is_not_found());

    // A second budget over the same pods: Kubernetes refuses to choose.
    let _: PodDisruptionBudget =
        create(&pdbs, budget("other", "bare", json!({"maxUnavailable": 1}))).await;
    let e = evict(&pods, "a", false).await.unwrap_err();
    assert_eq!(e.code(), Some(500), "{e}");
    assert!(
        e.to_string().contains("more than one PodDisruptionBudget"),
        "{e}"
    );

    // A percentage over pods without a controller cannot be computed: the controller
    // says why in an Event and allows nothing.
    let other: PodDisruptionBudget = pdbs.get("other").await.unwrap();
    eventually("an UnmanagedPods warning", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("UnmanagedPods")
                && e.involved_object.uid == other.metadata.uid
        })
    })
    .await;
    assert_eq!(
        pdbs.get("other")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_budgets_and_evictions_are_refused_with_causes() {
    let (_cluster, client) = support::cluster().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let both = budget(
        "both",
        "x",
        json!({"minAvailable": 1, "maxUnavailable": "120%"}),
    );
    let e = pdbs
        .create(
            &PostParams::default(),
            &serde_json::from_value(both).unwrap(),
        )
        .await
        .unwrap_err();
    let status = e.api_error().unwrap();
    assert_eq!(status.code, 422);
    let fields: Vec<&str> = status.causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["spec", "spec.maxUnavailable"], "{status:?}");
    assert!(pdbs.get("both").await.unwrap_err().is_not_found());

    let _: Pod = create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}),
    )
    .await;
    let wrong = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "q"}});
    let e = pods
        .create_subresource::<_, Value>("eviction", "p", &PostParams::default(), &wrong)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(400));
    assert!(e
        .to_string()
        .contains("name in URL does not match name in Eviction object"));
    assert!(
        pods.get("p").await.is_ok(),
        "a bad eviction deletes nothing"
    );
    assert!(evict(&pods, "missing", false)
        .await
        .unwrap_err()
        .is_not_found());

    // A pod on a node stays through its grace period: it shows why it is going.
    let _: Pod = create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1.25"}]}}),
    )
    .await;
    mark_ready(&pods, "bound").await.unwrap();
    evict(&pods, "bound", false).await.unwrap();
    let pod = pods.get("bound").await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_some());
    let conds = pod.status.unwrap().conditions.unwrap();
    let target = conds
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(
        (
            target.status.as_str(),
            target.reason.as_deref(),
            target.message.as_deref()
        ),
        (
            "True",
            Some("EvictionByEvictionAPI"),
            Some("Eviction API: evicting")
        )
    );
}
