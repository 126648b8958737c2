//! The garbage collector against a real apiserver and etcd: Background deletion of
//! dependents whose owners are all gone (across kinds), Foreground deletion that keeps
//! the owner until its blocking dependents are gone, and Orphan deletion (explicit, and
//! the default of core/v1 ReplicationControllers) that strips the owner references.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ReplicationController, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, DeleteParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use support::{create, eventually_within, start};

const WAIT: Duration = Duration::from_secs(30);

fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta, block: bool) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": meta.name, "uid": meta.uid,
        "controller": true, "blockOwnerDeletion": block})
}

fn pod(name: &str, owners: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": owners},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

async fn gone<K>(api: &Api<K>, name: &str) -> Option<()>
where
    K: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
{
    api.get_opt(name).await.unwrap().is_none().then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_dependents_whose_owners_are_all_gone() {
    let (_cluster, client, _gc) = start(&["garbagecollector"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owner = create(&cms, json!({"metadata": {"name": "owner"}}))
        .await
        .metadata;
    let owner2 = create(&cms, json!({"metadata": {"name": "owner2"}}))
        .await
        .metadata;
    let r1 = owner_ref("v1", "ConfigMap", &owner, false);
    let r2 = owner_ref("v1", "ConfigMap", &owner2, false);
    create(
        &cms,
        json!({"metadata": {"name": "dep", "ownerReferences": [r1]}}),
    )
    .await;
    create(
        &secrets,
        json!({"metadata": {"name": "dep-secret", "ownerReferences": [r1]}}),
    )
    .await;
    let mut second = r2.clone();
    second["controller"] = json!(false);
    create(
        &cms,
        json!({"metadata": {"name": "two-owners", "ownerReferences": [r1, second]}}),
    )
    .await;
    // An owner that never existed, and one whose name now has another uid.
    let ghost =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"});
    create(
        &cms,
        json!({"metadata": {"name": "dep-of-ghost", "ownerReferences": [ghost]}}),
    )
    .await;
    let stale =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": "old-uid"});
    create(
        &cms,
        json!({"metadata": {"name": "dep-of-stale", "ownerReferences": [stale]}}),
    )
    .await;

    eventually_within(WAIT, "dependents of absent owners deleted", || async {
        gone(&cms, "dep-of-ghost").await?;
        gone(&cms, "dep-of-stale").await
    })
    .await;
    assert!(
        cms.get_opt("dep").await.unwrap().is_some(),
        "owner still there"
    );

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually_within(WAIT, "dependents of the deleted owner gone", || async {
        gone(&cms, "dep").await?;
        gone(&secrets, "dep-secret").await
    })
    .await;
    let survivor = eventually_within(WAIT, "the dangling reference dropped", || async {
        let cm = cms.get("two-owners").await.unwrap();
        (cm.metadata.owner_references.as_ref()?.len() == 1).then_some(cm)
    })
    .await;
    let refs = survivor.metadata.owner_references.unwrap();
    assert_eq!(refs[0].uid, owner2.uid.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cms.get_opt("two-owners").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_blocking_dependents_across_kinds() {
    let (_cluster, client, _gc) = start(&["garbagecollector"]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let spec =
        json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template});
    let d = create(
        &deployments,
        json!({"metadata": {"name": "web"}, "spec": spec}),
    )
    .await;
    let d_ref = owner_ref("apps/v1", "Deployment", &d.metadata, true);
    let rs = create(
        &replicasets,
        json!({"metadata": {"name": "web-1", "ownerReferences": [d_ref]}, "spec": spec}),
    )
    .await;
    let rs_ref = owner_ref("apps/v1", "ReplicaSet", &rs.metadata, true);
    create(&pods, pod("web-1-a", json!([rs_ref]))).await;
    // A finalizer keeps this pod terminating until the test lets it go.
    let mut held = pod("web-1-b", json!([rs_ref]));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&pods, held).await;

    let marked = deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );
    eventually_within(
        WAIT,
        "the free pod deleted, the held one terminating",
        || async {
            gone(&pods, "web-1-a").await?;
            pods.get("web-1-b")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .map(|_| ())
        },
    )
    .await;
    // The ReplicaSet waits in foreground too, and so does the Deployment.
    let rs = replicasets.get("web-1").await.unwrap();
    assert!(rs.metadata.deletion_timestamp.is_some());
    assert!(rs
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_string()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(replicasets.get_opt("web-1").await.unwrap().is_some());
    assert!(deployments.get_opt("web").await.unwrap().is_some());

    pods.patch(
        "web-1-b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually_within(WAIT, "the whole chain gone", || async {
        gone(&pods, "web-1-b").await?;
        gone(&replicasets, "web-1").await?;
        gone(&deployments, "web").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_strips_owner_references() {
    let (_cluster, client, _gc) = start(&["garbagecollector"]).await;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let rs = create(
        &replicasets,
        json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )
    .await;
    let rs_ref = owner_ref("apps/v1", "ReplicaSet", &rs.metadata, true);
    create(&pods, pod("rs-a", json!([rs_ref]))).await;
    create(&pods, pod("rs-b", json!([rs_ref]))).await;
    let rc = create(
        &rcs,
        json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1,
            "selector": {"app": "web"}, "template": template}}),
    )
    .await;
    create(
        &pods,
        pod(
            "rc-a",
            json!([owner_ref("v1", "ReplicationController", &rc.metadata, true)]),
        ),
    )
    .await;

    let marked = replicasets
        .delete("rs", &DeleteParams::orphan())
        .await
        .unwrap();
    assert_eq!(
        marked.metadata.finalizers.as_deref(),
        Some(&["orphan".to_string()][..])
    );
    // core/v1 ReplicationControllers orphan by default.
    let marked = rcs.delete("rc", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        marked.metadata.finalizers.as_deref(),
        Some(&["orphan".to_string()][..])
    );

    eventually_within(WAIT, "the owners gone", || async {
        gone(&replicasets, "rs").await?;
        gone(&rcs, "rc").await
    })
    .await;
    for name in ["rs-a", "rs-b", "rc-a"] {
        let p = pods.get(name).await.unwrap();
        assert!(p.metadata.deletion_timestamp.is_none(), "{name} kept");
        assert!(
            p.metadata.owner_references.unwrap_or_default().is_empty(),
            "{name} orphaned"
        );
    }
}
