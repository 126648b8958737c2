//! PriorityClasses served by the apiserver (built-in classes, validation, the table,
//! Priority admission of pods), and preemption by the scheduler.

use crate::support;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use keelson_client::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::{cluster, condition, eventually, start};

fn class(name: &str, value: i32, extra: serde_json::Value) -> PriorityClass {
    let mut v = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": name}, "value": value});
    support::merge(&mut v, &extra);
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_classes_and_admission() {
    let env = cluster().await;
    let classes: Api<PriorityClass> = Api::all(env.client.clone());
    let pp = PostParams::default();

    // Built in at bootstrap.
    let node_critical = classes.get("system-node-critical").await.unwrap();
    assert_eq!(node_critical.value, 2_000_001_000);
    assert_eq!(
        node_critical.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(
        classes.get("system-cluster-critical").await.unwrap().value,
        2_000_000_000
    );

    // Validation.
    let e = classes
        .create(&pp, &class("huge", 2_000_000_000, json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(422));
    assert!(
        e.to_string()
            .contains("maximum allowed value of a user defined priority is 1000000000"),
        "{e}"
    );
    let high = classes
        .create(&pp, &class("high", 1000, json!({})))
        .await
        .unwrap();
    assert_eq!(
        high.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    let mut changed = high.clone();
    changed.value = 1001;
    let e = classes.replace("high", &pp, &changed).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("value: Forbidden: may not be changed in an update."),
        "{e}"
    );
    let e = classes
        .delete("system-node-critical", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403));

    // The table kubectl prints.
    let out = keelson_testkit::ok(env.cluster.kubectl(&["get", "priorityclasses", "high"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    assert!(out.lines().nth(1).unwrap().starts_with("high"), "{out}");
    // Discovery and OpenAPI know the kind.
    let resources = keelson_testkit::ok(
        env.cluster
            .kubectl(&["api-resources", "--api-group=scheduling.k8s.io"]),
    );
    assert!(
        resources.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f == [
                "priorityclasses",
                "pc",
                "scheduling.k8s.io/v1",
                "false",
                "PriorityClass",
            ]
        }),
        "{resources}"
    );
    let explain = keelson_testkit::ok(
        env.cluster
            .kubectl(&["explain", "priorityclass.preemptionPolicy"]),
    );
    assert!(explain.contains("PreemptLowerPriority"), "{explain}");

    // Admission: the class becomes the priority.
    let pods = env.pods();
    let pod = |name: &str, class: Option<&str>| -> Pod {
        let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "pause"}]}});
        if let Some(c) = class {
            p["spec"]["priorityClassName"] = json!(c);
        }
        serde_json::from_value(p).unwrap()
    };
    let p = pods
        .create(&pp, &pod("with-class", Some("high")))
        .await
        .unwrap();
    assert_eq!(p.spec.as_ref().unwrap().priority, Some(1000));
    let p = pods
        .create(&pp, &pod("critical", Some("system-node-critical")))
        .await
        .unwrap();
    assert_eq!(p.spec.as_ref().unwrap().priority, Some(2_000_001_000));
    let e = pods
        .create(&pp, &pod("missing", Some("foo")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403));
    assert_eq!(
        e.api_error().unwrap().message,
        "pods \"missing\" is forbidden: no PriorityClass with name foo was found"
    );
    let p = pods.create(&pp, &pod("no-class", None)).await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().priority, Some(0));

    // A global default applies to pods without a class; only one may exist.
    classes
        .create(
            &pp,
            &class(
                "default-low",
                10,
                json!({"globalDefault": true, "preemptionPolicy": "Never"}),
            ),
        )
        .await
        .unwrap();
    let e = classes
        .create(&pp, &class("another", 20, json!({"globalDefault": true})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403));
    assert!(
        e.to_string().contains(
            "PriorityClass default-low is already marked as default. Only one default can exist"
        ),
        "{e}"
    );
    let p = eventually("the default class admitted", || async {
        let name = format!("defaulted-{}", rand_suffix());
        let p = pods.create(&pp, &pod(&name, None)).await.ok()?;
        (p.spec.as_ref()?.priority == Some(10)).then_some(p)
    })
    .await;
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority_class_name.as_deref(), Some("default-low"));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_makes_room_for_higher_priority() {
    let env = start().await;
    let classes: Api<PriorityClass> = Api::all(env.client.clone());
    let pp = PostParams::default();
    classes
        .create(&pp, &class("low", 100, json!({})))
        .await
        .unwrap();
    classes
        .create(&pp, &class("high", 1000, json!({})))
        .await
        .unwrap();
    env.add_node("n1", "2", json!({})).await;

    env.add_pod("low", "2", json!({"spec": {"priorityClassName": "low"}}))
        .await;
    assert_eq!(env.bound("low").await, "n1");

    env.add_pod("high", "2", json!({"spec": {"priorityClassName": "high"}}))
        .await;
    assert_eq!(env.pod("high").await.spec.unwrap().priority, Some(1000));

    // The victim is deleted gracefully (it stays until its kubelet is done) and told why;
    // the preemptor is nominated to the node.
    let victim = eventually("the victim terminating", || async {
        let p = env.pod("low").await;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let (status, reason, message) = condition(&victim, "DisruptionTarget").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PreemptionByScheduler")
    );
    assert_eq!(
        message,
        "default-scheduler: preempting to accommodate a higher priority pod"
    );
    let high = eventually("the preemptor nominated", || async {
        let p = env.pod("high").await;
        let nominated = p.status.as_ref()?.nominated_node_name.clone()?;
        (nominated == "n1").then_some(p)
    })
    .await;
    assert_eq!(
        condition(&high, "PodScheduled").unwrap().2,
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert!(support::node_of(&high).is_none());

    // A lower-priority pod arriving meanwhile does not take the room.
    env.add_pod(
        "late-low",
        "2",
        json!({"spec": {"priorityClassName": "low"}}),
    )
    .await;

    // Stand in for the kubelet: the victim's containers are gone.
    env.pods()
        .delete("low", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(env.bound("high").await, "n1");
    assert_eq!(
        env.unschedulable("late-low").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    assert!(env
        .metrics()
        .contains("scheduler_preemption_attempts_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_spares_pods_a_disruption_budget_protects() {
    let env = start().await;
    let classes: Api<PriorityClass> = Api::all(env.client.clone());
    let pp = PostParams::default();
    for (name, value) in [("low", 100), ("mid", 500), ("high", 1000)] {
        classes
            .create(&pp, &class(name, value, json!({})))
            .await
            .unwrap();
    }
    // A budget with no disruption left (as created; no disruption controller runs here)
    // over the lowest-priority pod.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}}))
    .unwrap();
    pdbs.create(&pp, &pdb).await.unwrap();

    env.add_node("n1", "2", json!({})).await;
    env.add_pod(
        "guarded",
        "2",
        json!({"metadata": {"labels": {"app": "db"}}, "spec": {"priorityClassName": "low"}}),
    )
    .await;
    assert_eq!(env.bound("guarded").await, "n1");
    env.add_node("n2", "2", json!({})).await;
    env.add_pod(
        "free",
        "2",
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"priorityClassName": "mid"}}),
    )
    .await;
    assert_eq!(env.bound("free").await, "n2");

    // Without the budget the lower-priority "guarded" would go; with it, "free" does.
    env.add_pod("high", "2", json!({"spec": {"priorityClassName": "high"}}))
        .await;
    eventually("the unguarded pod preempted", || async {
        let p = env.pod("free").await;
        p.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    eventually("the preemptor nominated to n2", || async {
        let p = env.pod("high").await;
        (p.status?.nominated_node_name? == "n2").then_some(())
    })
    .await;
    assert!(env
        .pod("guarded")
        .await
        .metadata
        .deletion_timestamp
        .is_none());
}
