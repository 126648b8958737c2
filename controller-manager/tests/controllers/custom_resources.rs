//! The garbage collector and the namespace controller find custom resources through
//! discovery, against a real apiserver and etcd: the CustomResourceDefinitions are
//! created after the controllers started, and have two served versions (v1 stored, v2
//! preferred), so owner references in either version reach the objects.

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keelson_client::PostParams;
use keelson_client::{Api, ApiResource, Client, DeleteParams, DynamicApi, Patch, PatchParams};
use serde_json::{json, Value};
use support::{create, eventually_within, start};

const WAIT: Duration = Duration::from_secs(30);

/// A namespaced CRD `widgets.<group>`: v1 stored, v2 served too (and preferred).
async fn create_crd(client: &Client, group: &str) {
    let crds = DynamicApi::all_with(
        client.clone(),
        &ApiResource::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    );
    let schema = json!({"openAPIV3Schema": {"type": "object",
        "x-kubernetes-preserve-unknown-fields": true}});
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": format!("widgets.{group}")},
    "spec": {"group": group, "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {"name": "v1", "served": true, "storage": true, "schema": schema},
            {"name": "v2", "served": true, "storage": false, "schema": schema},
        ]}});
    crds.create(&PostParams::default(), &crd).await.unwrap();
    eventually_within(WAIT, "the CRD served", || async {
        let d = client.discover().await.ok()?;
        d.resource(group, "widgets").map(|_| ())
    })
    .await;
}

fn widgets(client: &Client, group: &str, version: &str, ns: &str) -> DynamicApi {
    DynamicApi::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::new(group, version, "Widget", "widgets", true),
    )
}

async fn create_widget(api: &DynamicApi, name: &str, meta: Value) -> Value {
    let mut obj = json!({"apiVersion": api.resource().api_version(), "kind": "Widget",
        "metadata": {"name": name}, "spec": {"size": 1}});
    if let Some(m) = meta.as_object() {
        for (k, v) in m {
            obj["metadata"][k] = v.clone();
        }
    }
    api.create(&PostParams::default(), &obj).await.unwrap()
}

fn owner_ref(obj: &Value, block: bool) -> Value {
    json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "blockOwnerDeletion": block})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_deletes_custom_resources_and_waits_for_held_ones() {
    let (_cluster, client, _controllers) = start(&["namespace"]).await;
    let group = "ns.example.com";
    create_crd(&client, group).await;
    let ns = "crs";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": ns}})).await;
    let v1 = widgets(&client, group, "v1", ns);
    create_widget(&v1, "plain", json!({})).await;
    create_widget(&v1, "held", json!({"finalizers": ["example.com/hold"]})).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create(&cms, json!({"metadata": {"name": "cm"}})).await;

    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually_within(
        WAIT,
        "the free widget and the ConfigMap deleted",
        || async {
            let plain = v1.get_opt("plain").await.unwrap();
            let cm = cms.get_opt("cm").await.unwrap();
            (plain.is_none() && cm.is_none()).then_some(())
        },
    )
    .await;
    let held = v1.get("held").await.unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let remaining = eventually_within(WAIT, "the held widget reported", || async {
        let c = condition(&client, ns, "NamespaceContentRemaining").await?;
        (c["status"] == "True").then_some(c)
    })
    .await;
    assert_eq!(
        remaining["message"],
        format!("Some resources are remaining: widgets.{group} has 1 resource instances"),
        "{remaining}"
    );
    let finalizers = condition(&client, ns, "NamespaceFinalizersRemaining")
        .await
        .unwrap();
    assert_eq!(
        finalizers["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    // Held, the namespace stays, Terminating.
    let namespace = namespaces.get(ns).await.unwrap();
    assert_eq!(
        namespace.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );

    v1.patch(
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
    assert!(v1.get_opt("held").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_follows_owner_references_to_and_from_custom_resources() {
    let (_cluster, client, _controllers) = start(&["garbagecollector"]).await;
    let (group, ns) = ("gc.example.com", "default");
    // Served after the collector started: it must notice the new kind by itself.
    let served_at = Instant::now();
    create_crd(&client, group).await;
    let (v1, v2) = (
        widgets(&client, group, "v1", ns),
        widgets(&client, group, "v2", ns),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);

    // A ConfigMap owned by a custom resource (referenced in its stored version).
    let owner = create_widget(&v1, "owner", json!({})).await;
    create(
        &cms,
        json!({"metadata": {"name": "cm-dep", "ownerReferences": [owner_ref(&owner, false)]}}),
    )
    .await;
    v1.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually_within(
        WAIT,
        "the ConfigMap of a deleted widget collected",
        || async { cms.get_opt("cm-dep").await.unwrap().is_none().then_some(()) },
    )
    .await;
    println!(
        "a custom resource's dependent collected {:?} after its CRD was created",
        served_at.elapsed()
    );

    // A custom resource (in v2, the preferred version) owned by a ConfigMap.
    let cm_owner = create(&cms, json!({"metadata": {"name": "cm-owner"}})).await;
    let cm_owner = serde_json::to_value(cm_owner).unwrap();
    let mut cm_ref = owner_ref(&cm_owner, false);
    cm_ref["apiVersion"] = json!("v1");
    cm_ref["kind"] = json!("ConfigMap");
    create_widget(&v2, "w-dep", json!({"ownerReferences": [cm_ref]})).await;
    cms.delete("cm-owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually_within(
        WAIT,
        "the widget of a deleted ConfigMap collected",
        || async { v2.get_opt("w-dep").await.unwrap().is_none().then_some(()) },
    )
    .await;

    // Foreground deletion of a custom resource waits for its blocking dependent.
    let fg = create_widget(&v2, "fg", json!({})).await;
    create(
        &cms,
        json!({"metadata": {"name": "cm-blocking", "ownerReferences": [owner_ref(&fg, true)]}}),
    )
    .await;
    v2.delete("fg", &DeleteParams::foreground()).await.unwrap();
    eventually_within(
        WAIT,
        "the foreground owner and its dependent gone",
        || async {
            let owner = v2.get_opt("fg").await.unwrap();
            let dep = cms.get_opt("cm-blocking").await.unwrap();
            (owner.is_none() && dep.is_none()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_counts_custom_resources_found_through_discovery() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let (_cluster, client, _controllers) = start(&["resourcequota"]).await;
    let (group, ns) = ("quota.example.com", "default");
    create_crd(&client, group).await;
    let v1 = widgets(&client, group, "v1", ns);
    for name in ["a", "b"] {
        create_widget(&v1, name, json!({})).await;
    }
    let count = format!("count/widgets.{group}");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    create(
        &quotas,
        json!({"metadata": {"name": "widgets"}, "spec": {"hard": {count.clone(): "5"}}}),
    )
    .await;
    let used = |n: &'static str| {
        let (quotas, count) = (quotas.clone(), count.clone());
        async move {
            let q = serde_json::to_value(quotas.get("widgets").await.unwrap()).unwrap();
            (q["status"]["used"][&count] == n).then_some(())
        }
    };
    eventually_within(WAIT, "both widgets counted", || used("2")).await;
    // A deletion is only ever seen by the controller (admission charges creates).
    v1.delete("a", &DeleteParams::default()).await.unwrap();
    eventually_within(WAIT, "the deleted widget no longer counted", || used("1")).await;
}
