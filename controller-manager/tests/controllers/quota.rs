//! ResourceQuota (controller and apiserver admission) and LimitRange admission against a
//! real apiserver and etcd: usage is counted and charged, creates past a quota get
//! Kubernetes' 403, concurrent creates cannot overshoot, deletions free the quota, and
//! LimitRange defaults and minimums apply to new pods.

use crate::support;

use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ReplicationController, ResourceQuota, Service,
};
use keelson_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{eventually, start};

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

fn object<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, resources: Value) -> Pod {
    object(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "pause", "resources": resources}]}}))
}

/// `status.used` as `k=v` strings, sorted.
async fn used(quotas: &Api<ResourceQuota>, name: &str) -> Option<Vec<String>> {
    let status = quotas.get(name).await.ok()?.status?;
    status.hard.as_ref()?;
    let mut out: Vec<String> = status
        .used?
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.0))
        .collect();
    out.sort();
    Some(out)
}

async fn wait_used(quotas: &Api<ResourceQuota>, name: &str, want: &[&str]) {
    eventually(&format!("{name} used {want:?}"), || async {
        let u = used(quotas, name).await?;
        (u == want).then_some(())
    })
    .await;
}

fn forbidden_message<T: std::fmt::Debug>(r: keelson_client::Result<T>) -> String {
    let e = r.expect_err("expected 403");
    assert_eq!(e.code(), Some(403), "{e}");
    e.api_error().unwrap().message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_quota_is_charged_enforced_and_freed() {
    let (_cluster, client, _cm) = start(&["resourcequota"]).await;
    namespace(&client, "q").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "q");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "q");
    quotas
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "q1"},
                "spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/configmaps": "5"}}})),
        )
        .await
        .unwrap();
    wait_used(
        &quotas,
        "q1",
        &["count/configmaps=0", "pods=0", "requests.cpu=0"],
    )
    .await;

    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &pod(name, json!({"requests": {"cpu": "250m"}})),
        )
        .await
        .unwrap();
    }
    // Admission charged the quota before writing the pods.
    assert_eq!(
        used(&quotas, "q1").await.unwrap(),
        ["count/configmaps=0", "pods=2", "requests.cpu=500m"]
    );
    let refused = pods
        .create(
            &PostParams::default(),
            &pod("c", json!({"requests": {"cpu": "100m"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(refused),
        "pods \"c\" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"
    );
    // Nothing was charged for the refused pod.
    assert_eq!(used(&quotas, "q1").await.unwrap()[1], "pods=2");

    // Deleting a pod frees its share (the controller recounts).
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait_used(
        &quotas,
        "q1",
        &["count/configmaps=0", "pods=1", "requests.cpu=250m"],
    )
    .await;
    let too_big = pods
        .create(
            &PostParams::default(),
            &pod("c", json!({"requests": {"cpu": "800m"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(too_big),
        "pods \"c\" is forbidden: exceeded quota: q1, requested: requests.cpu=800m, used: requests.cpu=250m, limited: requests.cpu=1"
    );
    // The quota limits requests.cpu, so every container must state it.
    let unstated = pods
        .create(&PostParams::default(), &pod("c", json!({})))
        .await;
    assert_eq!(
        forbidden_message(unstated),
        "pods \"c\" is forbidden: failed quota: q1: must specify requests.cpu for: app"
    );
    pods.create(
        &PostParams::default(),
        &pod("c", json!({"requests": {"cpu": "100m"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        used(&quotas, "q1").await.unwrap(),
        ["count/configmaps=0", "pods=2", "requests.cpu=350m"]
    );

    // A finished pod stops counting.
    pods.patch_status(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    wait_used(
        &quotas,
        "q1",
        &["count/configmaps=0", "pods=1", "requests.cpu=250m"],
    )
    .await;

    // Other kinds are counted by their own monitors.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "q");
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "cm"}})),
    )
    .await
    .unwrap();
    wait_used(
        &quotas,
        "q1",
        &["count/configmaps=1", "pods=1", "requests.cpu=250m"],
    )
    .await;
    cms.delete("cm", &DeleteParams::default()).await.unwrap();
    wait_used(
        &quotas,
        "q1",
        &["count/configmaps=0", "pods=1", "requests.cpu=250m"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_cannot_overshoot() {
    let (_cluster, client, _cm) = start(&["resourcequota"]).await;
    namespace(&client, "burst").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "burst");
    quotas
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5"}}})),
        )
        .await
        .unwrap();
    wait_used(&quotas, "q", &["pods=0"]).await;
    let results = futures::future::join_all((0..12).map(|i| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "burst");
        async move {
            pods.create(&PostParams::default(), &pod(&format!("p{i}"), json!({})))
                .await
        }
    }))
    .await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 5, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code(), Some(403), "{e}");
    }
    // The controller may recount from a pod cache a create or two behind (as in
    // Kubernetes); it settles on what exists.
    wait_used(&quotas, "q", &["pods=5"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_services_and_replication_controllers() {
    let (_cluster, client, _cm) = start(&["resourcequota", "replicationcontroller"]).await;
    namespace(&client, "svc").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "svc");
    quotas
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "q2"}, "spec": {"hard": {
                "pods": "2", "limits.cpu": "4", "services": "5",
                "services.nodeports": "1", "services.loadbalancers": "1"}}})),
        )
        .await
        .unwrap();
    wait_used(
        &quotas,
        "q2",
        &[
            "limits.cpu=0",
            "pods=0",
            "services.loadbalancers=0",
            "services.nodeports=0",
            "services=0",
        ],
    )
    .await;

    // A quota on limits.cpu requires every container to set it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "svc");
    let unlimited = pods
        .create(
            &PostParams::default(),
            &pod("x", json!({"requests": {"cpu": "1"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(unlimited),
        "pods \"x\" is forbidden: failed quota: q2: must specify limits.cpu for: app"
    );

    // NodePorts: one fits; a LoadBalancer needing another does not, nor does turning a
    // ClusterIP Service into a NodePort one.
    let services: Api<Service> = Api::namespaced(client.clone(), "svc");
    let svc = |name: &str, type_: &str| -> Service {
        object(
            json!({"metadata": {"name": name}, "spec": {"type": type_, "ports": [{"port": 80}]}}),
        )
    };
    services
        .create(&PostParams::default(), &svc("np", "NodePort"))
        .await
        .unwrap();
    let lb = services
        .create(&PostParams::default(), &svc("lb", "LoadBalancer"))
        .await;
    assert_eq!(
        forbidden_message(lb),
        "services \"lb\" is forbidden: exceeded quota: q2, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"
    );
    services
        .create(&PostParams::default(), &svc("plain", "ClusterIP"))
        .await
        .unwrap();
    let to_node_port = services
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "NodePort"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(to_node_port).split(": exceeded").next(),
        Some("services \"plain\" is forbidden")
    );
    services
        .delete("np", &DeleteParams::default())
        .await
        .unwrap();
    wait_used(
        &quotas,
        "q2",
        &[
            "limits.cpu=0",
            "pods=0",
            "services.loadbalancers=0",
            "services.nodeports=0",
            "services=1",
        ],
    )
    .await;

    // A ReplicationController asking for more pods than the quota allows reports it.
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "svc");
    rcs.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"app": "web"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "pause", "resources": {"limits": {"cpu": "1"}}}]}}}})),
    )
    .await
    .unwrap();
    let message = eventually("ReplicaFailure condition", || async {
        let status = rcs.get("web").await.ok()?.status?;
        let c = status
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
        c.message
    })
    .await;
    assert!(
        message.contains("exceeded quota: q2, requested: pods=1, used: pods=2, limited: pods=2"),
        "{message}"
    );
    // Scaling down to what fits clears the condition.
    rcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    eventually("ReplicaFailure cleared", || async {
        let status = rcs.get("web").await.ok()?.status?;
        let failing = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "ReplicaFailure");
        (!failing && status.replicas == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_range_defaults_and_minimums() {
    let (_cluster, client, _cm) = start(&[]).await;
    namespace(&client, "lr").await;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), "lr");
    ranges
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "limits"}, "spec": {"limits": [{
                "type": "Container",
                "min": {"cpu": "100m"},
                "max": {"cpu": "2"},
                "default": {"cpu": "500m", "memory": "500Mi"},
                "defaultRequest": {"cpu": "200m", "memory": "200Mi"}}]}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "lr");
    let p = pods
        .create(&PostParams::default(), &pod("plain", json!({})))
        .await
        .unwrap();
    let resources = p.spec.unwrap().containers[0].resources.clone().unwrap();
    let text = |m: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        m.unwrap()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", v.0))
            .collect::<Vec<_>>()
    };
    assert_eq!(text(resources.requests), ["cpu=200m", "memory=200Mi"]);
    assert_eq!(text(resources.limits), ["cpu=500m", "memory=500Mi"]);
    assert_eq!(
        p.metadata.annotations.unwrap()["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );

    let small = pods
        .create(
            &PostParams::default(),
            &pod("small", json!({"requests": {"cpu": "50m"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(small),
        "pods \"small\" is forbidden: minimum cpu usage per Container is 100m, but request is 50m"
    );
    let big = pods
        .create(
            &PostParams::default(),
            &pod("big", json!({"limits": {"cpu": "3"}})),
        )
        .await;
    assert_eq!(
        forbidden_message(big),
        "pods \"big\" is forbidden: maximum cpu usage per Container is 2, but limit is 3"
    );
}
