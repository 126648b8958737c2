//! The namespace controller against a real apiserver and etcd, with a hollow node
//! playing the kubelet: deleting a namespace deletes everything in it (pods on a node
//! take their grace period, and the namespace says what is left meanwhile), new content
//! is refused while it terminates, and the namespace goes once it is empty. Objects
//! held by finalizers keep it until they go.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use keelson_client::{Api, Client, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{create, eventually_within, start};

const WAIT: Duration = Duration::from_secs(40);

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": name}})).await;
}

/// The namespace's condition of type `ty`, if the namespace is still there.
async fn condition(client: &Client, ns: &str, ty: &str) -> Option<Value> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::to_value(namespaces.get_opt(ns).await.unwrap()?).unwrap();
    ns.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

fn pod(name: &str, node: Option<&str>) -> Value {
    json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "terminationGracePeriodSeconds": 4, "containers": [{"name": "c", "image": "nginx"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let (_cluster, client, _controllers) = start(&["namespace"]).await;
    let mut hollow = keelson_hollow_node::HollowOptions::with_count(1);
    hollow.terminate_delay = Duration::from_secs(2);
    let node = hollow.node_name(0);
    let kubelet = tokio::spawn(keelson_hollow_node::run(
        client.clone(),
        hollow,
        std::future::pending(),
    ));

    let ns = "doomed";
    create_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for i in 0..3 {
        create(&cms, json!({"metadata": {"name": format!("cm-{i}")}})).await;
        create(
            &secrets,
            json!({"metadata": {"name": format!("secret-{i}")}}),
        )
        .await;
    }
    for name in ["web", "db"] {
        create(
            &services,
            json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    }
    create(&pods, pod("pending", None)).await;
    create(&pods, pod("running", Some(&node))).await;
    eventually_within(WAIT, "the bound pod running", || async {
        let p = pods.get("running").await.unwrap();
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let marked = namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.status.unwrap().phase.as_deref(), Some("Terminating"));
    // No new content while it terminates.
    let refused = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(403), "{refused}");

    // The running pod takes its grace period; meanwhile the namespace says so.
    let remaining = eventually_within(WAIT, "the namespace reporting the pod left", || async {
        let c = condition(&client, ns, "NamespaceContentRemaining").await?;
        (c["status"] == "True").then_some(c)
    })
    .await;
    assert_eq!(remaining["reason"], "SomeResourcesRemain");
    assert_eq!(
        remaining["message"],
        "Some resources are remaining: pods. has 1 resource instances"
    );
    let deleted = condition(&client, ns, "NamespaceDeletionContentFailure")
        .await
        .unwrap();
    assert_eq!(deleted["status"], "False");
    assert_eq!(deleted["reason"], "ContentDeleted");

    eventually_within(WAIT, "the namespace gone", || async {
        namespaces
            .get_opt(ns)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let none = ListParams::default();
    assert!(cms.list(&none).await.unwrap().items.is_empty());
    assert!(secrets.list(&none).await.unwrap().items.is_empty());
    assert!(services.list(&none).await.unwrap().items.is_empty());
    assert!(pods.list(&none).await.unwrap().items.is_empty());

    // A namespace of the same name starts empty.
    create_namespace(&client, ns).await;
    assert!(pods.list(&none).await.unwrap().items.is_empty());
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_held_by_finalizers_keep_the_namespace() {
    let (_cluster, client, _controllers) = start(&["namespace"]).await;
    let ns = "held";
    create_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create(
        &cms,
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    create(&cms, json!({"metadata": {"name": "free"}})).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();

    let fins = eventually_within(WAIT, "the namespace reporting the finalizer", || async {
        let c = condition(&client, ns, "NamespaceFinalizersRemaining").await?;
        (c["status"] == "True").then_some(c)
    })
    .await;
    assert_eq!(fins["reason"], "SomeFinalizersRemain");
    assert_eq!(
        fins["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert!(cms.get_opt("free").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(namespaces.get_opt(ns).await.unwrap().is_some());

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually_within(WAIT, "the namespace gone", || async {
        namespaces
            .get_opt(ns)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
