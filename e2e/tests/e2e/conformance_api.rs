//! The API machinery beneath the conformance tests, driven through kube-rs against a real
//! keelson-apiserver on a real etcd: what needs the test's own apiserver flags
//! (compaction), what Keelson promises beyond the conformance list (bookmarks, initial
//! events, list snapshots, apply, dry run, subresources, authentication), and checks of
//! Keelson's own wiring. The conformance mirrors themselves live in `keelson-conformance`
//! (`conformance_runner` runs them). Each test works in its own namespace of the shared
//! cluster.

use crate::support;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event as CoreEvent, Namespace, Pod, Service,
};
use k8s_openapi::api::events::v1::Event;
use keelson_conformance::framework::{expect_added, new_test_event, rv, set_data};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn pp() -> PostParams {
    PostParams::default()
}

// ---- watch machinery beyond the conformance list ------------------------------------

/// A watch from a resourceVersion etcd has compacted away ends with a 410 Expired ERROR
/// event, and a list at that exact resourceVersion is 410 too. Its own cluster: etcd is
/// compacted every 2s there. The watch goes to an apiserver started after the
/// compaction, whose watch cache cannot replay that far back (as with Kubernetes, a
/// watch cache that still holds the events may serve them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_resource_version_is_gone() {
    let opts = keelson_testkit::ApiserverOptions {
        extra_args: vec!["--etcd-compaction-interval=2s".into()],
        ..Default::default()
    };
    let mut cluster =
        tokio::task::spawn_blocking(move || keelson_testkit::Cluster::start_with(1, opts))
            .await
            .unwrap()
            .expect("second cluster");
    let client = client_for(&cluster).await;
    let ns = namespace(&client, "compaction").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let old = api
        .create(&pp(), &obj(json!({"metadata": {"name": "old"}})))
        .await
        .unwrap();
    let old_rv = old.resource_version().unwrap();

    // Keep writing until a list at the old revision is refused: etcd compacted past it.
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cm: ConfigMap = obj(json!({"metadata": {"name": "old"}, "data": {"n": n.to_string()}}));
        api.replace("old", &pp(), &cm).await.unwrap();
        n += 1;
        let exact = ListParams::default()
            .at(&old_rv)
            .matching(kube::api::VersionMatch::Exact);
        match api.list(&exact).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (410, "Expired"), "{s:?}");
                break;
            }
            Err(e) => panic!("list at {old_rv}: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd was never compacted past {old_rv}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A fresh apiserver: its watch cache starts now, so the old revision goes to etcd.
    let cluster = tokio::task::spawn_blocking(move || {
        let i = cluster.add_apiserver().expect("another apiserver");
        let path = cluster.dir.path().join("second.kubeconfig");
        cluster
            .write_kubeconfig(
                &path,
                &format!("https://127.0.0.1:{}", cluster.apiservers[i].port),
            )
            .unwrap();
        (cluster, path)
    })
    .await
    .unwrap();
    let fresh = client_from(&cluster.1).await;
    let api2: Api<ConfigMap> = Api::namespaced(fresh, &ns);
    let mut w = Watcher::start(&api2, &WatchParams::default().disable_bookmarks(), &old_rv).await;
    match w.next(WAIT).await {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired"), "{s:?}"),
        other => panic!("expected a 410 ERROR event, got {}", describe(&other)),
    }
    // A watch from the current revision still works on that apiserver.
    let now = api2
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = Watcher::start(&api2, &WatchParams::default().disable_bookmarks(), &now).await;
    let created = api
        .create(&pp(), &obj(json!({"metadata": {"name": "new"}})))
        .await
        .unwrap();
    expect_added(&mut w, &created).await;
    drop(cluster);
}

/// With allowWatchBookmarks an idle watch gets BOOKMARK events that carry only a
/// resourceVersion (at least that of the last event), and a watch resumed from a
/// bookmark's resourceVersion continues from there. Without it, no bookmarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_bookmarks_when_allowed() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "watch-bookmarks").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let rv0 = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut with = Watcher::start(&api, &WatchParams::default(), &rv0).await;
    let mut without = Watcher::start(&api, &WatchParams::default().disable_bookmarks(), &rv0).await;
    let created = api
        .create(&pp(), &obj(json!({"metadata": {"name": "a"}})))
        .await
        .unwrap();
    expect_added(&mut with, &created).await;
    expect_added(&mut without, &created).await;

    let bookmark = match with.next_within(Duration::from_secs(75)).await {
        Some(WatchEvent::Bookmark(b)) => b,
        Some(other) => panic!("expected a BOOKMARK, got {}", describe(&other)),
        None => panic!("no BOOKMARK within 75s"),
    };
    assert_eq!(bookmark.types.kind, "ConfigMap");
    assert_eq!(bookmark.types.api_version, "v1");
    let brv: u64 = bookmark
        .metadata
        .resource_version
        .parse()
        .expect("numeric bookmark resourceVersion");
    assert!(
        brv >= rv(&created),
        "bookmark {brv} is older than the last event {}",
        rv(&created)
    );
    // Nothing at all arrived on the watch without bookmarks in that time.
    without.expect_silence(Duration::from_millis(200)).await;

    let mut resumed = Watcher::start(
        &api,
        &WatchParams::default().disable_bookmarks(),
        &bookmark.metadata.resource_version,
    )
    .await;
    let b = api
        .create(&pp(), &obj(json!({"metadata": {"name": "b"}})))
        .await
        .unwrap();
    expect_added(&mut resumed, &b).await;
}

/// sendInitialEvents=true: the current state as ADDED events, then a BOOKMARK annotated
/// `k8s.io/initial-events-end: "true"` at a resourceVersion covering all of them, then
/// changes. It requires allowWatchBookmarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_send_initial_events_ends_with_annotated_bookmark() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "watch-initial-events").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut names = HashSet::new();
    let mut newest = 0;
    for i in 0..3 {
        let cm = api
            .create(
                &pp(),
                &obj(json!({"metadata": {"name": format!("cm-{i}")}})),
            )
            .await
            .unwrap();
        newest = newest.max(rv(&cm));
        names.insert(cm.name_any());
    }
    let wp = WatchParams::default().initial_events().disable_bookmarks();
    let mut wp = wp;
    wp.bookmarks = true;
    let mut w = Watcher::start(&api, &wp, "").await;
    let mut seen = HashSet::new();
    let end = loop {
        match w.next_within(WAIT).await {
            Some(WatchEvent::Added(cm)) => {
                assert!(seen.insert(cm.name_any()), "{} twice", cm.name_any())
            }
            Some(WatchEvent::Bookmark(b)) => break b,
            Some(other) => panic!("unexpected {}", describe(&other)),
            None => panic!("no initial-events-end bookmark"),
        }
    };
    assert_eq!(seen, names);
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true"),
        "{:?}",
        end.metadata.annotations
    );
    let end_rv: u64 = end.metadata.resource_version.parse().unwrap();
    assert!(
        end_rv >= newest,
        "bookmark {end_rv} older than the newest object {newest}"
    );
    let later = api
        .create(&pp(), &obj(json!({"metadata": {"name": "later"}})))
        .await
        .unwrap();
    expect_added(&mut w, &later).await;

    // Without allowWatchBookmarks the request is invalid.
    let r = raw(&client, "GET", &format!("/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"), None, Vec::new()).await;
    r.expect_status(422, "Invalid");
}

/// sendInitialEvents=false without a resourceVersion: a watch from now, without the
/// current state; changes made while it runs still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_send_initial_events_false_starts_from_now() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "watch-no-initial-events").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.create(&pp(), &obj(json!({"metadata": {"name": "existing"}})))
        .await
        .unwrap();
    let path = format!("/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=3");
    let watch = {
        let client = client.clone();
        tokio::spawn(async move { raw(&client, "GET", &path, None, Vec::new()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    api.create(&pp(), &obj(json!({"metadata": {"name": "fresh"}})))
        .await
        .unwrap();
    let r = watch.await.unwrap();
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(
        !r.body.contains("\"name\":\"existing\""),
        "initial state was sent: {}",
        r.body
    );
    assert!(
        r.body.contains("\"name\":\"fresh\""),
        "the change was not delivered: {}",
        r.body
    );
}

// ---- list snapshots ----------------------------------------------

/// A continued list is the snapshot of its first page even when writes happen between
/// pages and a page holds more than one etcd read's worth of keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continued_list_is_one_snapshot() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "chunking-snapshot").await;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let n = 700;
    futures::stream::iter(0..n)
        .for_each_concurrent(20, |i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap =
                    obj(json!({"metadata": {"name": format!("cm-{i:04}")}, "data": {"v": "0"}}));
                api.create(&pp(), &cm)
                    .await
                    .unwrap_or_else(|e| panic!("cm {i}: {e}"));
            }
        })
        .await;
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let token = first.metadata.continue_.clone().expect("continue token");
    // Writes after the first page: the continued pages must not see them.
    api.delete(&format!("cm-{:04}", n - 1), &DeleteParams::default())
        .await
        .unwrap();
    api.patch(
        &format!("cm-{:04}", n - 2),
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    api.create(&pp(), &obj(json!({"metadata": {"name": "cm-zzzz"}})))
        .await
        .unwrap();

    let rest = api
        .list(&ListParams::default().limit(n as u32).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let names: Vec<String> = rest.items.iter().map(|c| c.name_any()).collect();
    let want: Vec<String> = (1..n).map(|i| format!("cm-{i:04}")).collect();
    let missing: Vec<&String> = want.iter().filter(|w| !names.contains(w)).collect();
    let extra: Vec<&String> = names.iter().filter(|x| !want.contains(x)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the continued list is not the first page's snapshot: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(names, want, "order");
    let before = rest
        .items
        .iter()
        .find(|c| c.name_any() == format!("cm-{:04}", n - 2))
        .unwrap();
    assert_eq!(
        before.data.as_ref().unwrap()["v"],
        "0",
        "a later write leaked into the snapshot"
    );
    assert!(rest.metadata.continue_.as_deref().unwrap_or("").is_empty());
}

// ---- both Event APIs ----------------------------

fn core_event(ns: &str, name: &str, label: &str) -> CoreEvent {
    CoreEvent {
        metadata: obj(json!({"name": name, "labels": {label: "true"}})),
        message: Some(format!("This is {name}")),
        reason: Some("Test".into()),
        type_: Some("Normal".into()),
        count: Some(1),
        involved_object: obj(json!({"namespace": ns})),
        ..Default::default()
    }
}

/// Both Event APIs serve the same objects, as on Kubernetes: what one writes the other
/// reads, watches, updates and deletes, with the fields renamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_event_apis_share_their_events() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "events-shared").await;
    let v1: Api<Event> = Api::namespaced(client.clone(), &ns);
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
    let rv = core
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut core_watch = Watcher::start(&core, &WatchParams::default(), &rv).await;

    // Written through events.k8s.io, read and watched through core/v1.
    let created = v1
        .create(&pp(), &new_test_event(&ns, "from-v1", "shared"))
        .await
        .expect("create through events.k8s.io");
    let seen = core
        .get("from-v1")
        .await
        .expect("the same Event through core/v1");
    assert_eq!(seen.message.as_deref(), Some("This is from-v1"));
    assert_eq!(seen.reporting_component.as_deref(), Some("test-controller"));
    assert_eq!(seen.metadata.uid, created.metadata.uid);
    assert_eq!(
        seen.metadata.resource_version,
        created.metadata.resource_version
    );
    match core_watch.next_within(WAIT).await {
        Some(WatchEvent::Added(e)) => assert_eq!(e.name_any(), "from-v1"),
        other => panic!("expected ADDED from-v1 on the core watch, got {other:?}"),
    }

    // Written through core/v1 (the legacy shape), listed and selected through events.k8s.io.
    let mut legacy = core_event(&ns, "from-core", "shared");
    legacy.involved_object.name = Some("web".into());
    core.create(&pp(), &legacy)
        .await
        .expect("create through core/v1");
    let listed = v1
        .list(&ListParams::default().fields("regarding.name=web"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|e| e.name_any())
            .collect::<Vec<_>>(),
        ["from-core"]
    );
    let as_v1 = &listed.items[0];
    assert_eq!(as_v1.note.as_deref(), Some("This is from-core"));
    assert_eq!(as_v1.deprecated_count, Some(1));

    // A legacy Event may be updated through events.k8s.io (only creates there need the
    // reporting fields); its immutable fields stay immutable.
    v1.patch(
        "from-core",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .expect("label a legacy Event through events.k8s.io");
    assert_eq!(
        core.get("from-core").await.unwrap().labels()["touched"],
        "yes"
    );
    let changed = v1
        .patch(
            "from-core",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "rewritten"})),
        )
        .await;
    assert_eq!(status_of(changed).code, 422);
    assert_eq!(
        core.get("from-core").await.unwrap().message.as_deref(),
        Some("This is from-core")
    );

    // Deleted through one, gone from both.
    v1.delete("from-core", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status_of(core.get("from-core").await).code, 404);
    core.delete("from-v1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status_of(v1.get("from-v1").await).code, 404);
    assert!(v1
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

// ---- the kubernetes Service ------------------------------------------------------

/// `default/kubernetes` Endpoints name the live apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_endpoints_name_the_apiserver() {
    let (c, client) = shared().await;
    let eps = Api::<Endpoints>::namespaced(client, "default");
    let port = c.apiservers[0].port as i32;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(ep) = eps.get("kubernetes").await {
            let subset = &ep.subsets.unwrap_or_default()[0];
            assert!(!subset.addresses.clone().unwrap_or_default().is_empty());
            assert_eq!(subset.ports.as_ref().unwrap()[0].port, port);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no default/kubernetes endpoints"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- writes: concurrency, apply, names, finalizers, dry run ---------------------------

/// An update carrying a stale resourceVersion is a 409 Conflict and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_concurrency_rejects_stale_updates() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "optimistic-concurrency").await;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let v1 = api
        .create(
            &pp(),
            &obj(json!({"metadata": {"name": "occ"}, "data": {"k": "1"}})),
        )
        .await
        .unwrap();
    let mut v2 = v1.clone();
    set_data(&mut v2, "k", "2");
    let v2 = api
        .replace("occ", &pp(), &v2)
        .await
        .expect("update with the current resourceVersion");
    assert!(rv(&v2) > rv(&v1));

    let mut stale = v1.clone();
    set_data(&mut stale, "k", "stale");
    let s = status_of(api.replace("occ", &pp(), &stale).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );
    let s = status_of(api.patch("occ", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"resourceVersion": v1.resource_version()}, "data": {"k": "stale"}}))).await);
    assert_eq!(s.code, 409, "{s:?}");
    let now = api.get("occ").await.unwrap();
    assert_eq!(now, v2, "a rejected update changed the object");
}

fn managers(cm: &ConfigMap) -> BTreeMap<String, Value> {
    cm.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                serde_json::to_value(m.fields_v1).unwrap_or_default(),
            )
        })
        .collect()
}

/// Server-side apply: a second manager changing a field the first owns is a 409 naming
/// the owner; with force it takes the field over, and managedFields shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "server-side-apply").await;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let applied = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    api.patch(
        "ssa",
        &PatchParams::apply("manager-a"),
        &Patch::Apply(applied(json!({"a": "1", "b": "1"}))),
    )
    .await
    .expect("first apply");

    let s = status_of(
        api.patch(
            "ssa",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(applied(json!({"a": "2"}))),
        )
        .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
    assert!(
        s.message.contains("manager-a") && s.message.contains(".data.a"),
        "{}",
        s.message
    );
    let causes = s
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| c.reason == "FieldManagerConflict" && c.field == ".data.a"),
        "{causes:?}"
    );
    assert_eq!(
        api.get("ssa").await.unwrap().data.unwrap()["a"],
        "1",
        "a conflicting apply changed the object"
    );

    let cm = api
        .patch(
            "ssa",
            &PatchParams::apply("manager-b").force(),
            &Patch::Apply(applied(json!({"a": "2"}))),
        )
        .await
        .expect("forced apply");
    assert_eq!(cm.data.as_ref().unwrap()["a"], "2");
    assert_eq!(cm.data.as_ref().unwrap()["b"], "1");
    let m = managers(&cm);
    assert!(
        m.contains_key("manager-a") && m.contains_key("manager-b"),
        "{m:?}"
    );
    assert!(
        m["manager-b"].pointer("/f:data/f:a").is_some(),
        "manager-b owns data.a: {m:?}"
    );
    assert!(
        m["manager-a"].pointer("/f:data/f:a").is_none(),
        "manager-a lost data.a: {m:?}"
    );
    assert!(
        m["manager-a"].pointer("/f:data/f:b").is_some(),
        "manager-a keeps data.b: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_makes_unique_names() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "generate-name").await;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let mut names = HashSet::new();
    for _ in 0..5 {
        let cm = api
            .create(&pp(), &obj(json!({"metadata": {"generateName": "gen-"}})))
            .await
            .expect("create with generateName");
        let name = cm.name_any();
        assert!(
            name.starts_with("gen-") && name.len() == "gen-".len() + 5,
            "{name}"
        );
        assert_eq!(cm.metadata.generate_name.as_deref(), Some("gen-"));
        assert!(names.insert(name.clone()), "{name} handed out twice");
        api.get(&name).await.expect("the generated name is stored");
    }
}

/// A finalizer keeps a deleted object (with deletionTimestamp) until it is removed; no
/// new finalizers may be added meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_until_removed() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "finalizers").await;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    api.create(
        &pp(),
        &obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    let mut w = Watcher::start(
        &api,
        &WatchParams::default().disable_bookmarks(),
        &api.list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap(),
    )
    .await;
    let marked = api
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("the object stays (not a Status)");
    assert!(marked.metadata.deletion_timestamp.is_some(), "{marked:?}");
    let held = api.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        matches!(w.next(WAIT).await, WatchEvent::Modified(c) if c.metadata.deletion_timestamp.is_some())
    );

    let s = status_of(
        api.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
            ),
        )
        .await,
    );
    assert_eq!(s.code, 422, "{s:?}");
    // Other changes are still allowed.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .expect("a plain update of a deleting object");

    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("removing the finalizer");
    assert_eq!(status_of(api.get("held").await).code, 404);
    assert!(matches!(w.next(WAIT).await, WatchEvent::Modified(_)));
    assert!(matches!(w.next(WAIT).await, WatchEvent::Deleted(c) if c.name_any() == "held"));
}

/// dryRun=All runs the whole write path and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "dry-run").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let cm = api
        .create(
            &dry,
            &obj(json!({"metadata": {"name": "dry"}, "data": {"k": "v"}})),
        )
        .await
        .expect("dry-run create");
    assert_eq!(cm.name_any(), "dry");
    assert_eq!(
        status_of(api.get("dry").await).code,
        404,
        "a dry-run create was stored"
    );
    // Validation still runs.
    let s = status_of(
        api.create(&dry, &obj(json!({"metadata": {"name": "Not_Valid"}})))
            .await,
    );
    assert_eq!(s.code, 422);

    let real = api
        .create(
            &pp(),
            &obj(json!({"metadata": {"name": "real"}, "data": {"k": "v"}})),
        )
        .await
        .unwrap();
    let mut changed = real.clone();
    set_data(&mut changed, "k", "dry");
    let out = api
        .replace("real", &dry, &changed)
        .await
        .expect("dry-run update");
    assert_eq!(out.data.unwrap()["k"], "dry");
    api.patch(
        "real",
        &PatchParams::default().dry_run(),
        &Patch::Merge(json!({"data": {"k": "dry"}})),
    )
    .await
    .expect("dry-run patch");
    api.patch("real", &PatchParams::apply("dry").dry_run().force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "real"}, "data": {"k": "dry"}}))).await.expect("dry-run apply");
    api.delete("real", &DeleteParams::default().dry_run())
        .await
        .expect("dry-run delete");
    api.delete_collection(&DeleteParams::default().dry_run(), &ListParams::default())
        .await
        .expect("dry-run deletecollection");
    assert_eq!(
        api.get("real").await.expect("still there"),
        real,
        "a dry-run write changed the object"
    );

    // Services: a dry run allocates no ClusterIP for good.
    let svcs: Api<Service> = Api::namespaced(client, &ns);
    let svc: Service =
        obj(json!({"metadata": {"name": "dry-svc"}, "spec": {"ports": [{"port": 80}]}}));
    svcs.create(&dry, &svc).await.expect("dry-run service");
    assert_eq!(status_of(svcs.get("dry-svc").await).code, 404);
}

fn in_service_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("not an IPv4 address: {ip}"));
    let o = ip.octets();
    // 10.96.0.0/12 is 10.96.0.0 - 10.111.255.255.
    o[0] == 10 && (96..=111).contains(&o[1])
}

// ---- services -------------------------------------------------------------------------

/// ClusterIPs from 10.96.0.0/12 and NodePorts from 30000-32767, never shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "service-allocation").await;
    let api: Api<Service> = Api::namespaced(client, &ns);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for i in 0..4 {
        let svc: Service = obj(
            json!({"metadata": {"name": format!("svc-{i}")}, "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        let svc = api
            .create(&pp(), &svc)
            .await
            .expect("creating a NodePort service");
        let spec = svc.spec.unwrap();
        let ip = spec.cluster_ip.clone().unwrap();
        assert!(in_service_range(&ip), "{ip}");
        assert_eq!(spec.cluster_ips.as_deref(), Some(&[ip.clone()][..]));
        assert!(ips.insert(ip.clone()), "ClusterIP {ip} handed out twice");
        let np = spec.ports.unwrap()[0].node_port.expect("nodePort");
        assert!((30000..=32767).contains(&np), "{np}");
        assert!(ports.insert(np), "NodePort {np} handed out twice");
    }
    // Asking for a taken IP or port is a 422 naming the field.
    let first = api.get("svc-0").await.unwrap().spec.unwrap();
    let (taken_ip, taken_port) = (
        first.cluster_ip.unwrap(),
        first.ports.unwrap()[0].node_port.unwrap(),
    );
    let same_ip: Service = obj(
        json!({"metadata": {"name": "same-ip"}, "spec": {"clusterIP": taken_ip, "ports": [{"port": 80}]}}),
    );
    let s = status_of(api.create(&pp(), &same_ip).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(s.message.contains("already allocated"), "{}", s.message);
    let same_port: Service = obj(
        json!({"metadata": {"name": "same-port"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": taken_port}]}}),
    );
    let s = status_of(api.create(&pp(), &same_port).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(
        s.details
            .unwrap()
            .causes
            .iter()
            .any(|c| c.field.contains("nodePort")),
        "cause names the nodePort"
    );
    // Deleting a service frees both for the asking.
    api.delete("svc-0", &DeleteParams::default()).await.unwrap();
    let ip = api
        .create(&pp(), &same_ip)
        .await
        .expect("the freed ClusterIP")
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    assert_eq!(ip, taken_ip);
    let port = api
        .create(&pp(), &same_port)
        .await
        .expect("the freed NodePort")
        .spec
        .unwrap()
        .ports
        .unwrap()[0]
        .node_port;
    assert_eq!(port, Some(taken_port));
}

// ---- subresources ---------------------------------------------------------------------

fn deployment(name: &str) -> Deployment {
    obj(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }))
}

/// `/status` changes only status; the main resource ignores status changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_separates_spec_and_status() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "status-subresource").await;
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    let created = api.create(&pp(), &deployment("web")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let mut d = created.clone();
    d.status = Some(obj(json!({"replicas": 7, "observedGeneration": 9})));
    d.spec.as_mut().unwrap().replicas = Some(2);
    let d = api.replace("web", &pp(), &d).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    assert!(
        d.status.as_ref().and_then(|s| s.replicas).is_none(),
        "main-resource update wrote status: {:?}",
        d.status
    );
    assert_eq!(d.metadata.generation, Some(2));

    let mut s = d.clone();
    s.status = Some(obj(json!({"replicas": 3, "observedGeneration": 2})));
    s.spec.as_mut().unwrap().replicas = Some(9);
    let s = api
        .replace_status("web", &pp(), &s)
        .await
        .expect("status update");
    assert_eq!(
        s.spec.as_ref().unwrap().replicas,
        Some(2),
        "status update wrote spec"
    );
    assert_eq!(s.status.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        s.metadata.generation,
        Some(2),
        "a status update bumped generation"
    );

    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 5}})),
    )
    .await
    .expect("status patch");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 100}})),
    )
    .await
    .expect("main patch");
    let got = api.get("web").await.unwrap();
    assert_eq!(got.spec.as_ref().unwrap().replicas, Some(2));
    let st = got.status.as_ref().unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (Some(3), Some(1)));

    // Metadata sent to /status is kept, as Kubernetes' status strategies keep it,
    // except what the kind's strategy resets (a Deployment's labels).
    let labels_before = got.metadata.labels.clone();
    let patched = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"via-status": "yes"},
                "labels": {"via-status": "yes"}}, "status": {"readyReplicas": 2}})),
        )
        .await
        .expect("status patch with metadata");
    assert_eq!(
        patched
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("via-status")),
        Some(&"yes".to_string()),
        "annotation written through /status: {:?}",
        patched.metadata
    );
    assert_eq!(
        patched.metadata.labels, labels_before,
        "a Deployment's labels are kept"
    );
}

/// `/scale` reads and writes spec.replicas as an autoscaling/v1 Scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_get_update_patch() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "scale-subresource").await;
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    api.create(&pp(), &deployment("web")).await.unwrap();
    let scale = api.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web")
    );

    let mut want = scale.clone();
    want.spec.as_mut().unwrap().replicas = Some(4);
    let out = api
        .replace_scale("web", &pp(), &want)
        .await
        .expect("update scale");
    assert_eq!(out.spec.unwrap().replicas, Some(4));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(4)
    );

    let s = status_of(api.replace_scale("web", &pp(), &scale).await);
    assert_eq!(s.code, 409, "a Scale with a stale resourceVersion: {s:?}");

    let out: Scale = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("patch scale");
    assert_eq!(out.spec.unwrap().replicas, Some(2));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    let s = status_of(
        api.patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await,
    );
    assert_eq!(s.code, 422);
}

/// `pods/binding` sets nodeName once; a second binding is a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_binding_assigns_node_once() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "pod-binding").await;
    let api: Api<Pod> = Api::namespaced(client, &ns);
    api.create(&pp(), &obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))).await.unwrap();
    let binding = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let status: Value = api
        .create_subresource("binding", "p", &pp(), &binding("node-1"))
        .await
        .expect("binding");
    assert_eq!(status["status"], "Success", "{status}");
    let pod = api.get("p").await.unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = pod.status.unwrap().conditions.unwrap_or_default();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "{scheduled:?}"
    );

    let s = status_of(
        api.create_subresource::<Value, Value>("binding", "p", &pp(), &binding("node-2"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
    assert_eq!(
        api.get("p")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );
}

// ---- metrics, health, authentication --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_verb_resource_and_code() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "metrics").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.create(&pp(), &obj(json!({"metadata": {"name": "counted"}})))
        .await
        .unwrap();
    assert_eq!(status_of(api.get("missing").await).code, 404);
    let r = raw(&client, "GET", "/metrics", None, Vec::new()).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let has = |labels: &[&str]| {
        r.body
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .any(|l| {
                let count: f64 = l
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                count >= 1.0 && labels.iter().all(|want| l.contains(want))
            })
    };
    assert!(
        has(&["verb=\"POST\"", "resource=\"configmaps\"", "code=\"201\""]),
        "no POST configmaps 201 in:\n{}",
        r.body
    );
    assert!(
        has(&["verb=\"GET\"", "resource=\"configmaps\"", "code=\"404\""]),
        "no GET configmaps 404"
    );
    assert!(
        has(&["verb=\"LIST\"", "resource=\"configmaps\""])
            || has(&["verb=\"POST\"", "resource=\"namespaces\""])
    );
    assert!(
        r.body
            .contains("apiserver_request_duration_seconds_bucket{"),
        "no request duration histogram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_livez_and_healthz_are_ok() {
    let (c, client) = shared().await;
    let anonymous = client_without_cert(c, None).await;
    for path in ["/readyz", "/livez", "/healthz"] {
        for cl in [&client, &anonymous] {
            let r = raw(cl, "GET", path, None, Vec::new()).await;
            assert_eq!((r.code, r.body.trim()), (200, "ok"), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_credentials_are_unauthorized() {
    let (c, _) = shared().await;
    let anonymous = client_without_cert(c, None).await;
    for path in [
        "/api/v1/namespaces",
        "/api",
        "/apis/apps/v1/deployments",
        "/metrics",
    ] {
        raw(&anonymous, "GET", path, None, Vec::new())
            .await
            .expect_status(401, "Unauthorized");
    }
    let r = raw(
        &anonymous,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        br#"{"metadata":{"name":"anon"}}"#.to_vec(),
    )
    .await;
    r.expect_status(401, "Unauthorized");
    let wrong = client_without_cert(c, Some("not-the-token")).await;
    raw(&wrong, "GET", "/api/v1/namespaces", None, Vec::new())
        .await
        .expect_status(401, "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_authenticates() {
    let (c, admin) = shared().await;
    let ns = namespace(&admin, "bearer-token").await;
    let with_token = client_without_cert(c, Some(&c.token)).await;
    let list = Api::<Namespace>::all(with_token.clone())
        .list(&ListParams::default())
        .await
        .expect("listing with a token");
    assert!(list.items.iter().any(|n| n.name_any() == "default"));
    let api: Api<ConfigMap> = Api::namespaced(with_token, &ns);
    api.create(&pp(), &obj(json!({"metadata": {"name": "by-token"}})))
        .await
        .expect("creating with a token");
    Api::<ConfigMap>::namespaced(admin, &ns)
        .get("by-token")
        .await
        .expect("visible to the admin");
}
