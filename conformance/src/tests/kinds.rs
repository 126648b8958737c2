//! The API operations of kinds that run no containers: Ingress and IngressClass
//! (test/e2e/network/ingress.go, ingressclass.go), RuntimeClass
//! (test/e2e/common/node/runtimeclass.go), and storage.k8s.io's StorageClass, CSIDriver,
//! CSINode, VolumeAttachment and CSIStorageCapacity (test/e2e/storage/*.go). Each
//! follows what its upstream test does: discovery, then create, get, list, watch,
//! update, patch, delete and deletecollection. Cluster-scoped objects carry the test's
//! namespace in their names and labels, so parallel runs never meet.

use super::Test;
use crate::framework::*;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::fmt::Debug;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn pp() -> PostParams {
    PostParams::default()
}

/// The group, its version and the resources MUST be in discovery.
async fn discovered(client: &Client, group: &str, resources: &[&str]) {
    let groups = client.list_api_groups().await.expect("/apis");
    let found = groups
        .groups
        .iter()
        .find(|g| g.name == group)
        .unwrap_or_else(|| panic!("{group} not in /apis"));
    let gv = format!("{group}/v1");
    assert!(
        found.versions.iter().any(|v| v.group_version == gv),
        "{gv} not in /apis/{group}"
    );
    let list = client
        .list_api_group_resources(&gv)
        .await
        .unwrap_or_else(|e| panic!("/apis/{gv}: {e}"));
    for r in resources {
        assert!(
            list.resources.iter().any(|x| x.name == *r),
            "{r} not in /apis/{gv}"
        );
    }
}

trait Object:
    kube::Resource<DynamicType = ()>
    + Clone
    + Debug
    + Send
    + 'static
    + k8s_openapi::serde::de::DeserializeOwned
    + k8s_openapi::serde::Serialize
{
}
impl<K> Object for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + Debug
        + Send
        + 'static
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
{
}

/// Read, change and write back, retrying on conflict.
async fn update<K: Object>(api: &Api<K>, name: &str, f: impl Fn(&mut K)) -> K {
    for _ in 0..10 {
        let mut o = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        f(&mut o);
        match api.replace(name, &pp(), &o).await {
            Ok(o) => return o,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("updating {name}: {e}"),
        }
    }
    panic!("updating {name}: too many conflicts")
}

/// The upstream "API operations" sequence over three objects labelled `label=<value>`:
/// create, get, list, watch, patch, update, delete, deletecollection.
async fn api_operations<K: Object>(api: &Api<K>, objects: [K; 3], selector: &str) {
    let names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
    for o in &objects {
        api.create(&pp(), o).await.expect("create");
    }
    let got = api.get(&names[0]).await.expect("get");
    assert_eq!(got.name_any(), names[0]);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3, "{list:?}");
    let rv = list.metadata.resource_version.clone().unwrap_or_default();
    let mut w = Watcher::start(
        api,
        &WatchParams::default().labels(selector).disable_bookmarks(),
        &rv,
    )
    .await;

    let patched = api
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.annotations()["patched"], "true");
    match w.next(WAIT).await {
        WatchEvent::Modified(o) => assert_eq!(o.annotations()["patched"], "true"),
        other => panic!("expected MODIFIED, got {}", describe(&other)),
    }
    let updated = update(api, &names[0], |o| {
        o.annotations_mut().insert("updated".into(), "true".into());
    })
    .await;
    assert_eq!(updated.annotations()["updated"], "true");
    match w.next(WAIT).await {
        WatchEvent::Modified(o) => assert_eq!(o.annotations()["updated"], "true"),
        other => panic!("expected MODIFIED, got {}", describe(&other)),
    }

    api.delete(&names[2], &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(status_of(api.get(&names[2]).await).code, 404);
    let left = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list");
    assert_eq!(left.items.len(), 2);
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(selector),
    )
    .await
    .expect("deletecollection");
    let left = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list");
    assert!(left.items.is_empty(), "{left:?}");
}

/// The namespace's random suffix: names of at most 63 characters (CSI drivers) get it
/// instead of the whole namespace name.
fn short(ctx: &Ctx) -> &str {
    ctx.ns.rsplit('-').next().unwrap_or_default()
}

/// A label unique to this test run, for cluster-scoped objects.
fn run_label(ctx: &Ctx) -> (String, String) {
    ("e2e-run".to_string(), ctx.ns.clone())
}

fn selector(ctx: &Ctx) -> String {
    let (k, v) = run_label(ctx);
    format!("{k}={v}")
}

fn meta(ctx: &Ctx, name: &str) -> Value {
    let (k, v) = run_label(ctx);
    json!({"name": name, "labels": {k: v}})
}

// ---- test/e2e/network/ingressclass.go, ingress.go -------------------------------------

async fn ingress_class_api_operations(ctx: Ctx) {
    discovered(&ctx.client, "networking.k8s.io", &["ingressclasses"]).await;
    let api: Api<IngressClass> = Api::all(ctx.client.clone());
    let class = |i: usize| -> IngressClass {
        obj(json!({"metadata": meta(&ctx, &format!("{}-{i}", ctx.ns)),
            "spec": {"controller": "example.com/controller"}}))
    };
    api_operations(&api, [class(1), class(2), class(3)], &selector(&ctx)).await;
}

async fn ingress_api_operations(ctx: Ctx) {
    discovered(
        &ctx.client,
        "networking.k8s.io",
        &["ingresses", "ingresses/status"],
    )
    .await;
    let api: Api<Ingress> = ctx.api();
    let ingress = |name: &str| -> Ingress {
        obj(json!({"metadata": meta(&ctx, name), "spec": {
            "defaultBackend": {"service": {"name": "default-backend", "port": {"number": 8080}}},
            "rules": [{"host": "foo.bar.com", "http": {"paths": [{"path": "/foo", "pathType": "Prefix",
                "backend": {"service": {"name": "test-backend", "port": {"number": 8080}}}}]}}],
        }}))
    };
    // The status subresource first, on an object of its own.
    let created = api.create(&pp(), &ingress("status")).await.expect("create");
    let mut with_status = created.clone();
    with_status.status = Some(obj(
        json!({"loadBalancer": {"ingress": [{"ip": "169.1.1.1"}]}}),
    ));
    let s = api
        .replace_status("status", &pp(), &with_status)
        .await
        .expect("update status");
    assert_eq!(
        s.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .as_deref(),
        Some("169.1.1.1")
    );
    let s = api
        .patch_status(
            "status",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "169.1.1.2"}]}}})),
        )
        .await
        .expect("patch status");
    assert_eq!(
        s.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .as_deref(),
        Some("169.1.1.2")
    );
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    api.delete("status", &DeleteParams::default())
        .await
        .expect("delete");
    api_operations(
        &api,
        [
            ingress("ingress1"),
            ingress("ingress2"),
            ingress("ingress3"),
        ],
        &selector(&ctx),
    )
    .await;
}

// ---- test/e2e/common/node/runtimeclass.go ---------------------------------------------

async fn runtime_class_api_operations(ctx: Ctx) {
    discovered(&ctx.client, "node.k8s.io", &["runtimeclasses"]).await;
    let api: Api<RuntimeClass> = Api::all(ctx.client.clone());
    let class = |i: usize| -> RuntimeClass {
        obj(
            json!({"metadata": meta(&ctx, &format!("{}-{i}", ctx.ns)), "handler": format!("handler-{i}")}),
        )
    };
    api_operations(&api, [class(1), class(2), class(3)], &selector(&ctx)).await;
}

/// The handler Kubernetes' e2e framework preconfigures on its nodes
/// (`PreconfiguredRuntimeClassHandler`); these tests only need the pod scheduled.
const PRECONFIGURED_HANDLER: &str = "test-handler";

/// A cluster-scoped RuntimeClass named after the test's namespace; deleted at the end.
async fn create_runtime_class(
    ctx: &Ctx,
    suffix: &str,
    handler: &str,
    overhead: Option<Value>,
) -> String {
    let api: Api<RuntimeClass> = Api::all(ctx.client.clone());
    let name = format!("{}-{suffix}", ctx.ns);
    let mut body = json!({"metadata": {"name": name}, "handler": handler});
    if let Some(podfixed) = overhead {
        body["overhead"] = json!({ "podFixed": podfixed });
    }
    api.create(&pp(), &obj(body))
        .await
        .expect("create RuntimeClass");
    name
}

async fn delete_runtime_class(ctx: &Ctx, name: &str) {
    let api: Api<RuntimeClass> = Api::all(ctx.client.clone());
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete RuntimeClass");
}

/// `NewRuntimeClassPod`: a one-shot pod in the class.
fn runtime_class_pod(ctx: &Ctx, class: &str) -> k8s_openapi::api::core::v1::Pod {
    ctx.pod(
        &format!("test-runtimeclass-{class}"),
        json!({"runtimeClassName": class, "containers": [ctx.sh("test", "true")]}),
    )
}

/// `expectPodRejection`: creating a pod in `class` is forbidden (403).
async fn expect_pod_rejection(ctx: &Ctx, class: &str) {
    let status = status_of(
        ctx.pods()
            .create(&pp(), &runtime_class_pod(ctx, class))
            .await,
    );
    assert_eq!(
        status.code, 403,
        "a pod in RuntimeClass {class}: {status:?}"
    );
    assert!(status.message.contains("not found"), "{}", status.message);
}

/// The one pod of the namespace, once the scheduler has bound it.
async fn scheduled_pod(ctx: &Ctx, name: &str) -> k8s_openapi::api::core::v1::Pod {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pod = ctx.get_pod(name).await;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
        {
            return pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod {name} was never scheduled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn runtime_class_rejects_nonexistent(ctx: Ctx) {
    expect_pod_rejection(&ctx, &format!("{}-nonexistent", ctx.ns)).await;
}

async fn runtime_class_rejects_deleted(ctx: Ctx) {
    let name = create_runtime_class(&ctx, "delete-me", "runc", None).await;
    delete_runtime_class(&ctx, &name).await;
    let api: Api<RuntimeClass> = Api::all(ctx.client.clone());
    assert_eq!(status_of(api.get(&name).await).code, 404);
    expect_pod_rejection(&ctx, &name).await;
}

async fn runtime_class_schedules_without_overhead(ctx: Ctx) {
    let class =
        create_runtime_class(&ctx, "preconfigured-handler", PRECONFIGURED_HANDLER, None).await;
    let pod = ctx.create_pod(&runtime_class_pod(&ctx, &class)).await;
    let scheduled = scheduled_pod(&ctx, &pod.name_any()).await;
    let overhead = scheduled.spec.and_then(|s| s.overhead).unwrap_or_default();
    delete_runtime_class(&ctx, &class).await;
    assert!(
        overhead.is_empty(),
        "overhead set without one in the class: {overhead:?}"
    );
}

async fn runtime_class_schedules_with_overhead(ctx: Ctx) {
    let class = create_runtime_class(
        &ctx,
        "preconfigured-handler",
        PRECONFIGURED_HANDLER,
        Some(json!({"cpu": "10m", "memory": "1Mi"})),
    )
    .await;
    let pod = ctx.create_pod(&runtime_class_pod(&ctx, &class)).await;
    let scheduled = scheduled_pod(&ctx, &pod.name_any()).await;
    delete_runtime_class(&ctx, &class).await;
    let overhead = scheduled.spec.and_then(|s| s.overhead).unwrap_or_default();
    assert_eq!(overhead.get("cpu").map(|q| q.0.as_str()), Some("10m"));
    assert_eq!(overhead.get("memory").map(|q| q.0.as_str()), Some("1Mi"));
}

// ---- test/e2e/storage/csistoragecapacity.go -------------------------------------------

async fn csi_storage_capacity_api_operations(ctx: Ctx) {
    discovered(&ctx.client, "storage.k8s.io", &["csistoragecapacities"]).await;
    let api: Api<CSIStorageCapacity> = ctx.api();
    let capacity = |i: usize| -> CSIStorageCapacity {
        obj(
            json!({"metadata": meta(&ctx, &format!("csc-{i}")), "storageClassName": "someclass",
            "nodeTopology": {"matchLabels": {"topology.kubernetes.io/zone": "zone-a"}},
            "capacity": "1Gi"}),
        )
    };
    api_operations(
        &api,
        [capacity(1), capacity(2), capacity(3)],
        &selector(&ctx),
    )
    .await;
}

// ---- test/e2e/storage/csi_inline.go, csinodes.go, storageclass.go ---------------------

/// Create one object, read it, label it by patch, delete it; then create its
/// replacement, label it by update and delete it as a collection (the storage
/// lifecycle tests' shape).
async fn lifecycle<K: Object>(api: &Api<K>, first: K, second: K, selector: &str) {
    let name = first.name_any();
    api.create(&pp(), &first).await.expect("create");
    assert_eq!(api.get(&name).await.expect("get").name_any(), name);
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "true"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.labels()["patched"], "true");
    let listed = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(status_of(api.get(&name).await).code, 404);

    let name = second.name_any();
    api.create(&pp(), &second)
        .await
        .expect("create the replacement");
    let updated = update(api, &name, |o| {
        o.labels_mut().insert("updated".into(), "true".into());
    })
    .await;
    assert_eq!(updated.labels()["updated"], "true");
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(selector),
    )
    .await
    .expect("deletecollection");
    assert_eq!(status_of(api.get(&name).await).code, 404);
}

async fn csi_driver_lifecycle(ctx: Ctx) {
    let api: Api<CSIDriver> = Api::all(ctx.client.clone());
    let driver = |i: usize| -> CSIDriver {
        obj(
            json!({"metadata": meta(&ctx, &format!("e2e-{}-{i}.csi.example.com", short(&ctx))),
            "spec": {"attachRequired": true, "podInfoOnMount": true,
                "volumeLifecycleModes": ["Ephemeral"]}}),
        )
    };
    lifecycle(&api, driver(1), driver(2), &selector(&ctx)).await;
}

async fn csi_node_lifecycle(ctx: Ctx) {
    let api: Api<CSINode> = Api::all(ctx.client.clone());
    let node = |i: usize| -> CSINode {
        obj(json!({"metadata": meta(&ctx, &format!("{}-{i}", ctx.ns)), "spec": {"drivers": []}}))
    };
    lifecycle(&api, node(1), node(2), &selector(&ctx)).await;
}

async fn storage_class_lifecycle(ctx: Ctx) {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    let class = |i: usize| -> StorageClass {
        obj(json!({"metadata": meta(&ctx, &format!("{}-{i}", ctx.ns)),
            "provisioner": "e2e-fake-provisioner"}))
    };
    let created = api.create(&pp(), &class(0)).await.expect("create");
    assert_eq!(created.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(created.volume_binding_mode.as_deref(), Some("Immediate"));
    api.delete(&created.name_any(), &DeleteParams::default())
        .await
        .expect("delete");
    lifecycle(&api, class(1), class(2), &selector(&ctx)).await;
}

// ---- test/e2e/storage/volume_attachment.go --------------------------------------------

fn attachment(ctx: &Ctx, i: usize) -> VolumeAttachment {
    obj(
        json!({"metadata": meta(ctx, &format!("{}-{i}", ctx.ns)), "spec": {
        "attacher": "e2e-test.storage.k8s.io", "nodeName": "node-1",
        "source": {"persistentVolumeName": format!("pv-{i}")}}}),
    )
}

async fn volume_attachment_lifecycle(ctx: Ctx) {
    let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    lifecycle(
        &api,
        attachment(&ctx, 1),
        attachment(&ctx, 2),
        &selector(&ctx),
    )
    .await;
}

async fn volume_attachment_status(ctx: Ctx) {
    let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    let created = api
        .create(&pp(), &attachment(&ctx, 1))
        .await
        .expect("create");
    let name = created.name_any();
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "true"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.labels()["patched"], "true");
    let read = api.get_status(&name).await.expect("get status");
    assert!(!read.status.as_ref().expect("status").attached);
    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"attached": true}})),
        )
        .await
        .expect("patch status");
    assert!(patched.status.as_ref().unwrap().attached);
    let mut detached = patched.clone();
    detached.status.as_mut().unwrap().attached = false;
    let updated = api
        .replace_status(&name, &pp(), &detached)
        .await
        .expect("update status");
    assert!(!updated.status.as_ref().unwrap().attached);
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(status_of(api.get(&name).await).code, 404);
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-network] IngressClass API should support creating IngressClass API operations [Conformance]", ingress_class_api_operations),
        test!("[sig-network] Ingress API should support creating Ingress API operations [Conformance]", ingress_api_operations),
        test!("[sig-node] RuntimeClass should support RuntimeClasses API operations [Conformance]", runtime_class_api_operations),
        test!("[sig-node] RuntimeClass should reject a Pod requesting a non-existent RuntimeClass [NodeConformance] [Conformance]", runtime_class_rejects_nonexistent),
        test!("[sig-node] RuntimeClass should reject a Pod requesting a deleted RuntimeClass [NodeConformance] [Conformance]", runtime_class_rejects_deleted),
        test!("[sig-node] RuntimeClass should schedule a Pod requesting a RuntimeClass without PodOverhead [NodeConformance] [Conformance]", runtime_class_schedules_without_overhead),
        test!("[sig-node] RuntimeClass should schedule a Pod requesting a RuntimeClass and initialize its Overhead [NodeConformance] [Conformance]", runtime_class_schedules_with_overhead),
        test!("[sig-storage] CSIStorageCapacity should support CSIStorageCapacities API operations [Conformance]", csi_storage_capacity_api_operations),
        test!("[sig-storage] CSIInlineVolumes should run through the lifecycle of a CSIDriver [Conformance]", csi_driver_lifecycle),
        test!("[sig-storage] CSINodes CSI Conformance should run through the lifecycle of a csinode [Conformance]", csi_node_lifecycle),
        test!("[sig-storage] StorageClasses CSI Conformance should run through the lifecycle of a StorageClass [Conformance]", storage_class_lifecycle),
        test!("[sig-storage] VolumeAttachment Conformance should run through the lifecycle of a VolumeAttachment [Conformance]", volume_attachment_lifecycle),
        test!("[sig-storage] VolumeAttachment Conformance should apply changes to a volumeattachment status [Conformance]", volume_attachment_status),
    ]
}
