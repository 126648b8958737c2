//! ReplicaSet and ReplicationController against a real apiserver and etcd: pods are
//! created and deleted to match replicas, orphans adopted, non-matching pods released,
//! and status written.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use keelson_client::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{eventually, owned_pods, set_phase, start};

fn replicaset(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_scales_adopts_and_releases() {
    let (_cluster, client, _cm) = start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &replicaset("web", 3))
        .await
        .unwrap();
    let uid = rs.metadata.uid.clone().unwrap();

    let created = eventually("3 pods", || async {
        let p = owned_pods(&pods, &uid).await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &created {
        let name = p.metadata.name.as_deref().unwrap();
        assert!(
            name.starts_with("web-"),
            "generateName from the owner: {name}"
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()["tier"], "web");
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.block_owner_deletion),
            ("ReplicaSet", Some(true))
        );
    }
    eventually("status.replicas 3", || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.replicas == 3 && s.fully_labeled_replicas == Some(3) && s.observed_generation == Some(1))
            .then_some(())
    })
    .await;

    // Scale down: one pod left.
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("1 pod", || async {
        (owned_pods(&pods, &uid).await.len() == 1).then_some(())
    })
    .await;

    // An orphan with matching labels is adopted; replicas stay 1, so one pod goes.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    eventually("adoption, then back to 1 pod", || async {
        let owned = owned_pods(&pods, &uid).await;
        let all = pods.list(&ListParams::default()).await.ok()?.items;
        let live = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        (owned.len() == 1 && live == 1).then_some(())
    })
    .await;

    // Relabel the remaining pod: it is released (ownerReference dropped) and replaced.
    let survivor = owned_pods(&pods, &uid).await.remove(0);
    let survivor_name = survivor.metadata.name.clone().unwrap();
    pods.patch(
        &survivor_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .unwrap();
    eventually("release and replacement", || async {
        let released = pods.get(&survivor_name).await.ok()?;
        let refs = released.metadata.owner_references.unwrap_or_default();
        let owned = owned_pods(&pods, &uid).await;
        (refs.is_empty()
            && owned.len() == 1
            && owned[0].metadata.name.as_deref() != Some(&survivor_name))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_creates_pods_and_reports_ready() {
    let (_cluster, client, _cm) = start(&["replicationcontroller"]).await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"}, "template": {
            "metadata": {"labels": {"app": "legacy"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}}
    }))
    .unwrap();
    let rc = rcs.create(&PostParams::default(), &rc).await.unwrap();
    let uid = rc.metadata.uid.unwrap();
    let created = eventually("2 pods", || async {
        let p = owned_pods(&pods, &uid).await;
        (p.len() == 2).then_some(p)
    })
    .await;

    // Mark one pod Running and Ready, as a kubelet would: readyReplicas follows.
    let name = created[0].metadata.name.clone().unwrap();
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}})),
    )
    .await
    .unwrap();
    eventually("readyReplicas 1", || async {
        let s = rcs.get("legacy").await.ok()?.status?;
        (s.replicas == 2 && s.ready_replicas == Some(1) && s.available_replicas == Some(1))
            .then_some(())
    })
    .await;

    // A pod that fails is replaced.
    set_phase(&pods, &name, "Failed").await;
    eventually("a replacement for the failed pod", || async {
        let owned = owned_pods(&pods, &uid).await;
        let active = owned
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed"))
            .count();
        (active == 2).then_some(())
    })
    .await;
}
