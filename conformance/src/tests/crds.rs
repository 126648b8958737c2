//! CustomResourceDefinition conformance tests (custom_resource_definition.go,
//! crd_watch.go): CRDs created, listed by label and deleted as a collection, their
//! status subresource, discovery, defaulting on requests and from storage, and a watch
//! on custom resources.

use super::Test;
use crate::framework::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A fresh CRD like the e2e fixtures' `NewRandomNameV1CustomResourceDefinition`:
/// `<plural>.mygroup.example.com`, v1beta1, an open schema.
fn random_crd(scope: &str) -> (CustomResourceDefinition, String, String) {
    let mut rng = Rng::new();
    let suffix: String = (0..5)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect();
    let plural = format!("e2e-test-crd-{suffix}s");
    let kind = format!("E2eTestCrd{suffix}");
    let group = "mygroup.example.com";
    let crd = obj(json!({
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": format!("e2e-test-crd-{suffix}"), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }));
    (crd, plural, kind)
}

pub(super) fn crds(client: &Client) -> Api<CustomResourceDefinition> {
    Api::all(client.clone())
}

/// Whether a condition of the CRD is True.
fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Create a CRD and wait until it is established and its resource is in discovery
/// (`CreateNewV1CustomResourceDefinitionWatchUnsafe`).
pub(super) async fn create_established(
    client: &Client,
    crd: &CustomResourceDefinition,
) -> CustomResourceDefinition {
    let api = crds(client);
    let created = api
        .create(&PostParams::default(), crd)
        .await
        .unwrap_or_else(|e| panic!("creating CRD {}: {e}", crd.name_any()));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = api.get(&created.name_any()).await.expect("get CRD");
        let spec = &now.spec;
        let version = &spec.versions[0].name;
        let path = format!("/apis/{}/{version}", spec.group);
        let served = client
            .request::<Value>(http::Request::get(&path).body(Vec::new()).unwrap())
            .await
            .ok()
            .and_then(|doc| doc["resources"].as_array().cloned())
            .is_some_and(|rs| rs.iter().any(|r| r["name"] == spec.names.plural.as_str()));
        if established(&now) && served {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CRD {} not established and served within {WAIT:?}",
            created.name_any()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn delete_crd(client: &Client, name: &str) {
    match crds(client).delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting CRD {name}: {e}"),
    }
}

/// A JSON patch (the API has no typed form for it here): the patched object.
pub(super) async fn json_patch(client: &Client, path: &str, ops: Value) -> Value {
    let req = http::Request::patch(path)
        .header("Content-Type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    client
        .request::<Value>(req)
        .await
        .unwrap_or_else(|e| panic!("JSON patch of {path}: {e}"))
}

pub(super) const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

fn resource(crd: &CustomResourceDefinition) -> ApiResource {
    let spec = &crd.spec;
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&spec.group, &spec.versions[0].name, &spec.names.kind),
        &spec.names.plural,
    )
}

/// Simple CustomResourceDefinition creating/deleting custom resource definition objects works.
async fn crd_create_delete(ctx: Ctx) {
    let (crd, _, _) = random_crd("Cluster");
    let created = create_established(&ctx.client, &crd).await;
    delete_crd(&ctx.client, &created.name_any()).await;
}

/// Simple CustomResourceDefinition listing custom resource definition objects works.
async fn crd_list(ctx: Ctx) {
    let label = format!("e2e-list-test-uuid={}", ctx.ns);
    let mut created = Vec::new();
    for _ in 0..10 {
        let (mut crd, _, _) = random_crd("Cluster");
        crd.metadata.labels = Some([("e2e-list-test-uuid".to_string(), ctx.ns.clone())].into());
        created.push(create_established(&ctx.client, &crd).await);
    }
    let (other, _, _) = random_crd("Cluster");
    let other = create_established(&ctx.client, &other).await;
    let api = crds(&ctx.client);
    let list = api
        .list(&ListParams::default().labels(&label))
        .await
        .expect("listing CRDs");
    assert_eq!(list.items.len(), 10);
    for item in &list.items {
        let expected = created
            .iter()
            .find(|c| c.name_any() == item.name_any())
            .unwrap_or_else(|| panic!("{} was not created here", item.name_any()));
        assert_eq!(
            serde_json::to_value(&item.spec).unwrap(),
            serde_json::to_value(&expected.spec).unwrap()
        );
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&label),
    )
    .await
    .expect("deleting CRDs as a collection");
    api.get(&other.name_any())
        .await
        .expect("the unlabelled CRD stays");
    delete_crd(&ctx.client, &other.name_any()).await;
}

/// Simple CustomResourceDefinition getting/updating/patching custom resource
/// definition status sub-resource works.
async fn crd_status(ctx: Ctx) {
    let (crd, _, _) = random_crd("Cluster");
    let crd = create_established(&ctx.client, &crd).await;
    let name = crd.name_any();
    let api = crds(&ctx.client);
    let mut updated = None;
    for _ in 0..10 {
        let mut current = api.get_status(&name).await.expect("get CRD status");
        assert_eq!(
            serde_json::to_value(&current.spec).unwrap(),
            serde_json::to_value(&crd.spec).unwrap()
        );
        let mut status = serde_json::to_value(current.status.take().unwrap_or_default()).unwrap();
        let mut conds = status["conditions"].as_array().cloned().unwrap_or_default();
        conds.push(json!({"message": "updated", "status": "", "type": ""}));
        status["conditions"] = json!(conds);
        current.status = Some(obj(status));
        match api
            .replace_status(&name, &PostParams::default(), &current)
            .await
        {
            Ok(u) => {
                updated = Some(u);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("updating CRD status: {e}"),
        }
    }
    let has = |c: &CustomResourceDefinition, msg: &str| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|x| x.message.as_deref() == Some(msg)))
    };
    assert!(has(&updated.expect("status updated"), "updated"));
    let patched: CustomResourceDefinition = obj(
        json_patch(
            &ctx.client,
            &format!("{CRDS}/{name}/status"),
            json!([{"op": "add", "path": "/status/conditions", "value": [{"message": "patched", "status": "", "type": ""}]}]),
        )
        .await,
    );
    assert!(has(&patched, "patched"));
    delete_crd(&ctx.client, &name).await;
}

/// should include custom resource definition resources in discovery documents.
async fn crd_discovery(ctx: Ctx) {
    let get = |path: &'static str| {
        let client = ctx.client.clone();
        async move {
            client
                .request::<Value>(http::Request::get(path).body(Vec::new()).unwrap())
                .await
                .unwrap_or_else(|e| panic!("fetching {path}: {e}"))
        }
    };
    let groups = get("/apis").await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "apiextensions.k8s.io")
        .cloned()
        .expect("apiextensions.k8s.io in /apis");
    assert!(group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == "v1"));
    let group = get("/apis/apiextensions.k8s.io").await;
    assert_eq!(group["name"], "apiextensions.k8s.io");
    assert!(group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == "v1"));
    let list = get("/apis/apiextensions.k8s.io/v1").await;
    assert_eq!(list["groupVersion"], "apiextensions.k8s.io/v1");
    assert!(list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "customresourcedefinitions"));
}

/// custom resource defaulting for requests and from storage works.
async fn crd_defaulting(ctx: Ctx) {
    let (mut crd, _, kind) = random_crd("Cluster");
    let schema = crd.spec.versions[0].schema.as_mut().unwrap();
    let mut open = serde_json::to_value(schema.open_api_v3_schema.take().unwrap()).unwrap();
    open["properties"] = json!({"a": {"type": "string"}, "b": {"type": "string"}});
    schema.open_api_v3_schema = Some(obj(open));
    let crd = create_established(&ctx.client, &crd).await;
    let name = crd.name_any();
    let ar = resource(&crd);
    let crs: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
    let cr = |n: &str| -> DynamicObject {
        obj(json!({"apiVersion": ar.api_version, "kind": kind, "metadata": {"name": n}}))
    };
    crs.create(&PostParams::default(), &cr("cr-1"))
        .await
        .expect("creating CR without default in storage");
    let path = format!("{CRDS}/{name}");
    let patch = |ops: Value| json_patch(&ctx.client, &path, ops);
    patch(json!([{"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/a/default", "value": "A"}])).await;
    let read_until = |n: &'static str, check: fn(&DynamicObject) -> bool| {
        let crs = crs.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let o = crs.get(n).await.expect("get CR");
                if check(&o) {
                    return o;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{n} never read as expected: {o:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    read_until("cr-1", |o| o.data["a"] == "A").await;
    let created = crs
        .create(&PostParams::default(), &cr("cr-2"))
        .await
        .expect("creating CR with default in storage");
    assert_eq!(created.data["a"], "A", "defaulted on create");
    patch(json!([
        {"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/a/default"},
        {"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/b/default", "value": "B"}
    ]))
    .await;
    read_until("cr-2", |o| o.data["b"] == "B" && o.data["a"] == "A").await;
    delete_crd(&ctx.client, &name).await;
}

/// CustomResourceDefinition Watch watch on custom resource definition objects.
async fn crd_watch(ctx: Ctx) {
    let (crd, _, kind) = random_crd("Cluster");
    let crd = create_established(&ctx.client, &crd).await;
    let ar = resource(&crd);
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
    let watch_for = |n: &str| {
        WatchParams::default()
            .fields(&format!("metadata.name={n}"))
            .disable_bookmarks()
    };
    let mut wa = Watcher::start(&api, &watch_for("name1"), "0").await;
    let mut wb = Watcher::start(&api, &watch_for("name2"), "0").await;
    let cr = |n: &str| -> DynamicObject {
        obj(
            json!({"apiVersion": ar.api_version, "kind": kind, "metadata": {"name": n}, "content": {"key": "value"}}),
        )
    };
    let expect = |ev: WatchEvent<DynamicObject>, want: &str, name: &str| {
        let (got, o) = match &ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            _ => panic!("unexpected {}", describe(&ev)),
        };
        assert_eq!((got, o.name_any().as_str()), (want, name));
        o.clone()
    };
    api.create(&PostParams::default(), &cr("name1"))
        .await
        .expect("create name1");
    expect(wa.next(WAIT).await, "ADDED", "name1");
    api.create(&PostParams::default(), &cr("name2"))
        .await
        .expect("create name2");
    expect(wb.next(WAIT).await, "ADDED", "name2");
    api.patch(
        "name1",
        &PatchParams::default(),
        &Patch::Merge(json!({"dummy": "test"})),
    )
    .await
    .expect("modify name1");
    let modified = expect(wa.next(WAIT).await, "MODIFIED", "name1");
    assert_eq!(modified.data["dummy"], "test");
    api.patch(
        "name2",
        &PatchParams::default(),
        &Patch::Merge(json!({"dummy": "test"})),
    )
    .await
    .expect("modify name2");
    expect(wb.next(WAIT).await, "MODIFIED", "name2");
    api.delete("name1", &DeleteParams::default())
        .await
        .expect("delete name1");
    expect(wa.next(WAIT).await, "DELETED", "name1");
    api.delete("name2", &DeleteParams::default())
        .await
        .expect("delete name2");
    expect(wb.next(WAIT).await, "DELETED", "name2");
    delete_crd(&ctx.client, &crd.name_any()).await;
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition creating/deleting custom resource definition objects works [Conformance]", crd_create_delete),
        test!("[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition listing custom resource definition objects works [Conformance]", crd_list),
        test!("[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition getting/updating/patching custom resource definition status sub-resource works [Conformance]", crd_status),
        test!("[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] should include custom resource definition resources in discovery documents [Conformance]", crd_discovery),
        test!("[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] custom resource defaulting for requests and from storage works [Conformance]", crd_defaulting),
        test!("[sig-api-machinery] CustomResourceDefinition Watch [Privileged:ClusterAdmin] CustomResourceDefinition Watch watch on custom resource definition objects [Conformance]", crd_watch),
    ]
}
