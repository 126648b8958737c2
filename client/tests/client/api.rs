//! Typed and dynamic calls against a real cluster (etcd + keelson-apiserver).

use crate::common;

use std::sync::LazyLock;
use std::time::Duration;

use common::{client, configmap, namespace, next_events};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use keelson_client::{
    Api, ApiResource, Client, DeleteParams, DynamicApi, Error, ListParams, ObjectView, Patch,
    PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
};
use keelson_testkit::Cluster;
use serde_json::{json, Value};

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| {
    Cluster::start().expect("starting the test cluster (cargo build --workspace --bins first)")
});

async fn cluster() -> &'static Cluster {
    tokio::task::spawn_blocking(|| &*CLUSTER)
        .await
        .expect("cluster")
}

fn data(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref()?.get(key).cloned()
}

fn rv(cm: &ConfigMap) -> String {
    cm.metadata
        .resource_version
        .clone()
        .expect("resourceVersion")
}

fn api_error(r: Result<impl std::fmt::Debug, Error>) -> keelson_client::ApiError {
    match r {
        Err(Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_update_conflict_delete() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "crud").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    let created = api
        .create(
            &pp,
            &configmap("a", json!({"app": "web"}), json!({"k": "1"})),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert!(created.metadata.uid.is_some(), "server fills uid");
    let rv1 = rv(&created);

    let e = api_error(api.create(&pp, &configmap("a", json!({}), json!({}))).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"a\" already exists");

    let got = api.get("a").await.expect("get");
    assert_eq!(data(&got, "k").as_deref(), Some("1"));
    assert_eq!(rv(&got), rv1);

    let missing = api.get("nope").await;
    assert!(
        missing.as_ref().is_err_and(Error::is_not_found),
        "{missing:?}"
    );
    let e = api_error(missing);
    assert_eq!(e.reason, "NotFound");
    assert_eq!((e.kind.as_str(), e.name.as_str()), ("configmaps", "nope"));
    assert!(api.get_opt("nope").await.expect("get_opt").is_none());

    for (name, app) in [("b", "web"), ("c", "db"), ("d", "web")] {
        api.create(&pp, &configmap(name, json!({"app": app}), json!({})))
            .await
            .expect("create");
    }
    let web = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    let names: Vec<_> = web
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert!(!web.metadata.resource_version.is_empty());
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .expect("list");
    assert_eq!(by_field.items.len(), 1);

    // Pages of two.
    let page1 = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 2);
    let token = page1
        .metadata
        .continue_token
        .clone()
        .expect("continue token");
    assert_eq!(page1.metadata.remaining_item_count, Some(2));
    let page2 = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    let all: Vec<_> = page1
        .iter()
        .chain(page2.iter())
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(all, ["a", "b", "c", "d"]);
    assert!(page2.metadata.continue_token.is_none());

    // Replace with the current resourceVersion, then with the stale one.
    let mut edit = got.clone();
    edit.data = Some([("k".to_string(), "2".to_string())].into());
    let replaced = api.replace("a", &pp, &edit).await.expect("replace");
    assert_eq!(data(&replaced, "k").as_deref(), Some("2"));
    assert_ne!(rv(&replaced), rv1);
    let stale = api.replace("a", &pp, &edit).await;
    assert!(stale.as_ref().is_err_and(Error::is_conflict), "{stale:?}");
    let e = api_error(stale);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );
    assert_eq!(
        data(&api.get("a").await.unwrap(), "k").as_deref(),
        Some("2")
    );

    // 422 with the field causes.
    let e = api_error(
        api.create(&pp, &configmap("Bad_Name", json!({}), json!({})))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(e.causes[0].field, "metadata.name");

    // Dry run persists nothing.
    api.create(
        &PostParams::default().dry_run(),
        &configmap("dry", json!({}), json!({})),
    )
    .await
    .expect("dry-run create");
    assert!(api.get_opt("dry").await.unwrap().is_none());

    // Delete with a failing precondition, then for real.
    let e = api_error(
        api.delete(
            "a",
            &DeleteParams::default().preconditions(Preconditions {
                uid: Some("not-the-uid".into()),
                resource_version: None,
            }),
        )
        .await,
    );
    assert_eq!(e.code, 409);
    let deleted = api
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(deleted.metadata.name.as_deref(), Some("a"));
    assert!(api.get("a").await.is_err_and(|e| e.is_not_found()));
    assert!(api
        .delete("a", &DeleteParams::default())
        .await
        .is_err_and(|e| e.is_not_found()));

    let gone = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=web"),
        )
        .await
        .expect("delete collection");
    let mut gone: Vec<_> = gone
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    gone.sort();
    assert_eq!(gone, ["b", "d"]);
    let left = api.list(&ListParams::default()).await.unwrap();
    let left: Vec<_> = left
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(left, ["c"]);

    // Across namespaces, and a cluster-scoped resource.
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let found = everywhere
        .list(&ListParams::default().fields(&format!("metadata.namespace={ns}")))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let nodes: Api<Node> = Api::all(client);
    nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
}

#[tokio::test]
async fn patches_of_every_kind() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "patch").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &configmap("p", json!({"app": "x"}), json!({"a": "1"})),
    )
    .await
    .unwrap();

    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(data(&merged, "a").as_deref(), Some("1"));
    assert_eq!(data(&merged, "b").as_deref(), Some("2"));

    let jp = json!([
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
    ]);
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .expect("json patch");
    assert_eq!(data(&patched, "a").as_deref(), Some("10"));
    assert_eq!(data(&patched, "b"), None);
    let bad = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::<()>::Json(json!([{"op": "test", "path": "/data/a", "value": "nope"}])),
        )
        .await;
    assert!(bad.is_err(), "a failing JSON patch test op is an error");

    // Strategic merge keeps other containers (merged by name); merge patch replaces the list.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deploys
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("create deployment");
    let side = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}});
    let d = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(side.clone()),
        )
        .await
        .expect("strategic patch");
    assert_eq!(container_names(&d), ["side", "app"]);
    let d = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(side))
        .await
        .expect("merge patch");
    assert_eq!(container_names(&d), ["side"]);

    // Server-side apply: a second manager conflicts unless it forces.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"x": "1"}});
    let cm = cms
        .patch(
            "applied",
            &PatchParams::apply("mgr-a"),
            &Patch::Apply(&applied),
        )
        .await
        .expect("apply creates");
    assert_eq!(data(&cm, "x").as_deref(), Some("1"));
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"x": "2"}});
    let conflict = cms
        .patch(
            "applied",
            &PatchParams::apply("mgr-b"),
            &Patch::Apply(&other),
        )
        .await;
    assert!(
        conflict.as_ref().is_err_and(Error::is_conflict),
        "{conflict:?}"
    );
    let cm = cms
        .patch(
            "applied",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced apply");
    assert_eq!(data(&cm, "x").as_deref(), Some("2"));
    let managers: Vec<_> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"mgr-b".to_string()), "{managers:?}");
    let e = api_error(
        cms.patch("applied", &PatchParams::default(), &Patch::Apply(&other))
            .await,
    );
    assert!(
        e.code == 400 || e.code == 422,
        "apply needs a field manager: {e:?}"
    );
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            },
        },
    }))
    .expect("deployment")
}

fn container_names(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test]
async fn status_scale_and_binding_subresources() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "subresources").await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deploys
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();

    // Status writes leave spec alone; spec writes leave status alone.
    let d = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}, "status": {"observedGeneration": 1}})),
        )
        .await
        .expect("patch status");
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(1));
    assert_eq!(
        d.spec.as_ref().unwrap().replicas,
        Some(1),
        "status patch must not change spec"
    );
    let mut edit = d.clone();
    edit.status.as_mut().unwrap().observed_generation = Some(2);
    let d = deploys
        .replace_status("web", &PostParams::default(), &edit)
        .await
        .expect("replace status");
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(2));
    let mut edit = d.clone();
    edit.status.as_mut().unwrap().observed_generation = Some(9);
    let d = deploys
        .replace("web", &PostParams::default(), &edit)
        .await
        .expect("replace");
    assert_eq!(
        d.status.as_ref().unwrap().observed_generation,
        Some(2),
        "main resource ignores status"
    );

    let mut scale = deploys.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    scale.spec.as_mut().unwrap().replicas = Some(3);
    let scale = deploys
        .replace_scale("web", &PostParams::default(), &scale)
        .await
        .expect("replace scale");
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    let scale = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("patch scale");
    assert_eq!(scale.spec.unwrap().replicas, Some(5));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let _: Value = pods
        .create_subresource("binding", "p", &PostParams::default(), &binding)
        .await
        .expect("bind");
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let again = pods
        .create_subresource::<_, Value>("binding", "p", &PostParams::default(), &binding)
        .await;
    assert!(again.as_ref().is_err_and(Error::is_conflict), "{again:?}");
}

#[tokio::test]
async fn dynamic_api_on_json() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "dynamic").await;
    let ar = ApiResource::new("apps", "v1", "Deployment", "deployments", true);
    let api = DynamicApi::namespaced_with(client.clone(), &ns, &ar);
    let obj = serde_json::to_value(deployment("dyn", 2)).unwrap();
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("dynamic create");
    assert_eq!(created["kind"], "Deployment");
    assert_eq!(created["spec"]["replicas"], 2);
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0]["metadata"]["name"], "dyn");
    let patched = api
        .patch(
            "dyn",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["x"], "y");
    // The typed view of the same object.
    let typed: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        typed.get("dyn").await.unwrap().metadata.labels.unwrap()["x"],
        "y"
    );
    let unknown = DynamicApi::all_with(
        client,
        &ApiResource::new("example.com", "v1", "Widget", "widgets", true),
    );
    let e = api_error(unknown.list(&ListParams::default()).await);
    assert_eq!(e.code, 404);
    api.delete("dyn", &DeleteParams::background())
        .await
        .expect("dynamic delete");
}

#[tokio::test]
async fn watch_delivers_changes_in_order() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "watch").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    api.create(&pp, &configmap("old", json!({"app": "w"}), json!({})))
        .await
        .unwrap();
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;

    let mut all = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch");
    let mut only_w = api
        .watch(&WatchParams::default().labels("app=w"), &start)
        .await
        .expect("watch");

    api.create(&pp, &configmap("a", json!({"app": "w"}), json!({"n": "0"})))
        .await
        .unwrap();
    for n in 1..=3 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": n.to_string()}})),
        )
        .await
        .unwrap();
    }
    api.create(&pp, &configmap("b", json!({"app": "other"}), json!({})))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let events = next_events(&mut all, 6, Duration::from_secs(20)).await;
    let mut seen = Vec::new();
    let mut last_rv = start.parse::<u64>().unwrap();
    for ev in &events {
        let (kind, cm) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        let this_rv: u64 = rv(cm).parse().unwrap();
        assert!(this_rv > last_rv, "resourceVersions increase: {events:?}");
        last_rv = this_rv;
        seen.push(format!(
            "{kind} {} {}",
            cm.metadata.name.as_deref().unwrap(),
            data(cm, "n").unwrap_or_default()
        ));
    }
    assert_eq!(
        seen,
        [
            "ADDED a 0",
            "MODIFIED a 1",
            "MODIFIED a 2",
            "MODIFIED a 3",
            "ADDED b ",
            "DELETED a 3"
        ]
    );

    // The selector hides b.
    let events = next_events(&mut only_w, 5, Duration::from_secs(20)).await;
    assert!(
        matches!(events.last(), Some(WatchEvent::Deleted(o)) if o.metadata.name.as_deref() == Some("a"))
    );
    assert!(events
        .iter()
        .all(|e| !matches!(e, WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("b"))));

    // From "": the current state first, then the initial-events-end bookmark on request.
    let mut initial = api
        .watch(&WatchParams::default().initial_events(), "")
        .await
        .expect("watch");
    let mut names = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, initial.next())
            .await
            .expect("initial events")
            .expect("open")
            .expect("event")
        {
            WatchEvent::Added(o) => names.push(o.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) if b.is_initial_events_end() => break,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    names.sort();
    assert_eq!(names, ["b", "old"]);

    // A bad selector fails the call itself with the Status.
    let e = api
        .watch(&WatchParams::default().labels("a in (b"), &start)
        .await
        .err()
        .expect("bad selector");
    assert_eq!(e.code(), Some(400), "{e:?}");

    // The request timeout bounds the start of a call, not the life of a watch.
    let mut cfg = keelson_client::Config::from_kubeconfig(&c.kubeconfig).unwrap();
    cfg.request_timeout = Some(Duration::from_millis(500));
    let short: Api<ConfigMap> = Api::namespaced(Client::new(cfg).unwrap(), &ns);
    let now = short
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let mut w = short.watch(&WatchParams::default(), &now).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.create(&pp, &configmap("late", json!({}), json!({})))
        .await
        .unwrap();
    let events = next_events(&mut w, 1, Duration::from_secs(10)).await;
    assert!(
        matches!(&events[0], WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("late")),
        "{events:?}"
    );
}

/// Views over gRPC: without managedFields, and metadata only (`PartialObjectMetadata`).
/// Watchers of every view see the object exactly as written, at the write's
/// resourceVersion (the apiserver hands its own writes to the watch cache rather than
/// decoding them again; a mismatch between the two forms would show here).
#[tokio::test]
async fn list_and_watch_views() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "views").await;
    let typed: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let ar = ApiResource::erase::<ConfigMap>();
    let dynamic = DynamicApi::namespaced_with(client.clone(), &ns, &ar);
    let pp = PostParams::default();
    let created = typed
        .create(&pp, &configmap("v", json!({"app": "v"}), json!({"n": "0"})))
        .await
        .unwrap();
    assert!(
        created.metadata.managed_fields.is_some(),
        "a write records its manager"
    );

    let lean = ObjectView {
        omit_managed_fields: true,
        ..Default::default()
    };
    let meta = ObjectView {
        metadata_only: true,
        omit_managed_fields: false,
    };
    let full = typed.list(&ListParams::default()).await.unwrap();
    assert!(full.items[0].metadata.managed_fields.is_some());
    let without = typed
        .list(&ListParams {
            view: lean,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(without.items[0].metadata.managed_fields, None);
    assert_eq!(data(&without.items[0], "n").as_deref(), Some("0"));
    let metadata = dynamic
        .list(&ListParams {
            view: meta,
            ..Default::default()
        })
        .await
        .unwrap();
    let item = &metadata.items[0];
    assert_eq!(item["kind"], "PartialObjectMetadata");
    assert_eq!(item["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(item["metadata"]["labels"]["app"], "v");
    assert!(item["metadata"]["managedFields"].is_array());
    assert!(item.get("data").is_none(), "{item}");

    let start = rv(&created);
    let watch = |view| WatchParams {
        view,
        ..Default::default()
    };
    let mut w_full = typed
        .watch(&watch(ObjectView::default()), &start)
        .await
        .unwrap();
    let mut w_lean = typed.watch(&watch(lean), &start).await.unwrap();
    let mut w_meta = dynamic.watch(&watch(meta), &start).await.unwrap();
    let patched = typed
        .patch(
            "v",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": "1"}})),
        )
        .await
        .unwrap();
    typed.delete("v", &DeleteParams::default()).await.unwrap();

    let full_events = next_events(&mut w_full, 2, Duration::from_secs(20)).await;
    let lean_events = next_events(&mut w_lean, 2, Duration::from_secs(20)).await;
    let meta_events = next_events(&mut w_meta, 2, Duration::from_secs(20)).await;
    let WatchEvent::Modified(f) = &full_events[0] else {
        panic!("{full_events:?}")
    };
    assert_eq!(f, &patched, "the watched object is the written one");
    let WatchEvent::Modified(l) = &lean_events[0] else {
        panic!("{lean_events:?}")
    };
    let mut expected = patched.clone();
    expected.metadata.managed_fields = None;
    assert_eq!(l, &expected);
    let WatchEvent::Modified(m) = &meta_events[0] else {
        panic!("{meta_events:?}")
    };
    assert_eq!(m["kind"], "PartialObjectMetadata");
    assert_eq!(m["metadata"]["resourceVersion"], rv(&patched).as_str());
    assert!(m.get("data").is_none());
    for deleted in [&full_events[1], &lean_events[1]] {
        let WatchEvent::Deleted(d) = deleted else {
            panic!("{deleted:?}")
        };
        assert_eq!(data(d, "n").as_deref(), Some("1"));
        assert!(rv(d).parse::<u64>().unwrap() > rv(&patched).parse::<u64>().unwrap());
    }
    let WatchEvent::Deleted(d) = &meta_events[1] else {
        panic!("{meta_events:?}")
    };
    assert_eq!(d["metadata"]["name"], "v");
    assert!(d.get("data").is_none());
}

#[tokio::test]
async fn credentials_server_names_and_default_kubeconfig() {
    let c = cluster().await;
    // A kubeconfig with the CA and a token, no client certificate.
    let with_token = |token: &str, path: &str| {
        let mut kc = keelson_pki::Kubeconfig::load(&c.kubeconfig).unwrap();
        kc.users[0].user = keelson_pki::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        let p = c.dir.path().join(path);
        kc.save(&p).unwrap();
        p
    };
    let good = Client::from_kubeconfig(with_token(&c.token, "token.kubeconfig")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(good, "default");
    api.list(&ListParams::default())
        .await
        .expect("token authenticates");

    let bad = Client::from_kubeconfig(with_token("wrong-token", "bad-token.kubeconfig")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(bad, "default");
    let e = api
        .list(&ListParams::default())
        .await
        .expect_err("wrong token");
    assert_eq!(
        (e.code(), e.reason()),
        (Some(401), Some("Unauthorized")),
        "{e:?}"
    );

    // KUBECONFIG (only this test sets it), and the context's namespace as default.
    let mut kc = keelson_pki::Kubeconfig::load(&c.kubeconfig).unwrap();
    kc.contexts[0].context.namespace = Some("kube-system".into());
    let p = c.dir.path().join("ns.kubeconfig");
    kc.save(&p).unwrap();
    std::env::set_var("KUBECONFIG", format!("{}:/nonexistent", p.display()));
    let client = Client::from_kubeconfig_default().expect("default kubeconfig");
    assert_eq!(client.default_namespace(), "kube-system");
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    assert_eq!(api.namespace(), Some("kube-system"));
    api.list(&ListParams::default()).await.expect("list");

    // Nothing listening: a transport error, not an API error.
    let port = keelson_testkit::free_port();
    let p = c.dir.path().join("closed.kubeconfig");
    c.write_kubeconfig(&p, &format!("https://127.0.0.1:{port}"))
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(Client::from_kubeconfig(&p).unwrap(), "default");
    let e = api
        .list(&ListParams::default())
        .await
        .expect_err("nothing listening");
    assert!(matches!(e, Error::Grpc(_)) && e.is_transient(), "{e:?}");

    // The server name to verify (and SNI for DNS names) comes from the URL host, or
    // from tls-server-name.
    let port = c.apiservers[0].port;
    let by_name = |server: &str, tls_server_name: Option<&str>, file: &str| {
        let mut kc = keelson_pki::Kubeconfig::load(&c.kubeconfig).unwrap();
        kc.clusters[0].cluster.server = server.to_string();
        kc.clusters[0].cluster.tls_server_name = tls_server_name.map(str::to_string);
        let p = c.dir.path().join(file);
        kc.save(&p).unwrap();
        Api::<ConfigMap>::namespaced(Client::from_kubeconfig(&p).unwrap(), "default")
    };
    by_name(
        &format!("https://localhost:{port}"),
        None,
        "localhost.kubeconfig",
    )
    .list(&ListParams::default())
    .await
    .expect("localhost is a SAN of the serving certificate");
    by_name(
        &format!("https://127.0.0.1:{port}"),
        Some("kubernetes.default.svc"),
        "sni.kubeconfig",
    )
    .list(&ListParams::default())
    .await
    .expect("tls-server-name is verified instead of the IP");
    let e = by_name(
        &format!("https://127.0.0.1:{port}"),
        Some("not-the-apiserver.example"),
        "wrong-name.kubeconfig",
    )
    .list(&ListParams::default())
    .await
    .expect_err("a name the certificate does not have");
    assert!(matches!(e, Error::Grpc(_)), "{e:?}");
}
