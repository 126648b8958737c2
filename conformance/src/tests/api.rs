//! The API-only conformance tests (no container runs): watches, chunking, server version,
//! namespaces, leases, events, configmaps, endpoints, disruption budgets (service
//! accounts are in auth.rs). Each follows what its upstream e2e test does.

use super::Test;
use crate::framework::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event as CoreEvent, EventSeries as CoreEventSeries, Namespace,
    PodTemplate, Service,
};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::ResourceExt;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const WATCH_LABEL: &str = "watch-this-configmap";

fn pp() -> PostParams {
    PostParams::default()
}

fn labelled_cm(name: &str, value: &str) -> ConfigMap {
    obj(json!({"metadata": {"name": name, "labels": {WATCH_LABEL: value}}}))
}

/// Watch configmaps whose label is one of `values`, as watch.go's `watchConfigMaps`.
async fn watch_cms(api: &Api<ConfigMap>, rv: &str, values: &[&str]) -> Watcher<ConfigMap> {
    let wp = WatchParams::default()
        .labels(&format!("{WATCH_LABEL} in ({})", values.join(",")))
        .disable_bookmarks();
    Watcher::start(api, &wp, rv).await
}

/// Read, change and write back an object, retrying on conflict (client-go's
/// `RetryOnConflict`, which the upstream tests use: controllers write the same objects).
async fn update<K>(api: &Api<K>, name: &str, f: impl Fn(&mut K)) -> K
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
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

async fn update_cm(api: &Api<ConfigMap>, name: &str, f: impl Fn(&mut ConfigMap)) -> ConfigMap {
    update(api, name, f).await
}

async fn expect_modified(w: &mut Watcher<ConfigMap>, want: &ConfigMap) {
    match w.next(WAIT).await {
        WatchEvent::Modified(got) => assert_eq!(
            &got, want,
            "MODIFIED object differs from what the write returned"
        ),
        other => panic!(
            "expected MODIFIED {}, got {}",
            want.name_any(),
            describe(&other)
        ),
    }
}

/// A DELETED event for `name`, with a resourceVersion newer than `after`.
async fn expect_deleted(w: &mut Watcher<ConfigMap>, name: &str, after: &ConfigMap) {
    match w.next(WAIT).await {
        WatchEvent::Deleted(got) => {
            assert_eq!(got.name_any(), name);
            assert!(
                rv(&got) > rv(after),
                "DELETED must carry the deletion's resourceVersion: {got:?}"
            );
        }
        other => panic!("expected DELETED {name}, got {}", describe(&other)),
    }
}

// ---- test/e2e/apimachinery/watch.go -------------------------------------------------

/// watch-configmaps-with-multiple-watchers
async fn watch_configmaps_with_multiple_watchers(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let (a_label, b_label) = ("multiple-watchers-A", "multiple-watchers-B");
    let mut wa = watch_cms(&api, "", &[a_label]).await;
    let mut wb = watch_cms(&api, "", &[b_label]).await;
    let mut wab = watch_cms(&api, "", &[a_label, b_label]).await;

    let a = api
        .create(&pp(), &labelled_cm("e2e-watch-test-configmap-a", a_label))
        .await
        .unwrap();
    expect_added(&mut wa, &a).await;
    expect_added(&mut wab, &a).await;
    let a = update_cm(&api, "e2e-watch-test-configmap-a", |cm| {
        set_data(cm, "mutation", "1")
    })
    .await;
    expect_modified(&mut wa, &a).await;
    expect_modified(&mut wab, &a).await;
    let a = update_cm(&api, "e2e-watch-test-configmap-a", |cm| {
        set_data(cm, "mutation", "2")
    })
    .await;
    expect_modified(&mut wa, &a).await;
    expect_modified(&mut wab, &a).await;
    api.delete("e2e-watch-test-configmap-a", &DeleteParams::default())
        .await
        .unwrap();
    expect_deleted(&mut wa, "e2e-watch-test-configmap-a", &a).await;
    expect_deleted(&mut wab, "e2e-watch-test-configmap-a", &a).await;

    // B's watcher saw none of A's notifications: its first event is B's creation.
    let b = api
        .create(&pp(), &labelled_cm("e2e-watch-test-configmap-b", b_label))
        .await
        .unwrap();
    expect_added(&mut wb, &b).await;
    expect_added(&mut wab, &b).await;
    api.delete("e2e-watch-test-configmap-b", &DeleteParams::default())
        .await
        .unwrap();
    expect_deleted(&mut wb, "e2e-watch-test-configmap-b", &b).await;
    expect_deleted(&mut wab, "e2e-watch-test-configmap-b", &b).await;
    // And A's watcher sees nothing of B.
    wa.expect_silence(Duration::from_secs(1)).await;
}

/// watch-configmaps-from-resource-version
async fn watch_configmaps_from_resource_version(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let name = "e2e-watch-test-resource-version";
    api.create(&pp(), &labelled_cm(name, "from-resource-version"))
        .await
        .unwrap();
    let first = update_cm(&api, name, |cm| set_data(cm, "mutation", "1")).await;
    let second = update_cm(&api, name, |cm| set_data(cm, "mutation", "2")).await;
    api.delete(name, &DeleteParams::default()).await.unwrap();

    let mut w = watch_cms(
        &api,
        first.resource_version().as_deref().unwrap(),
        &["from-resource-version"],
    )
    .await;
    expect_modified(&mut w, &second).await;
    expect_deleted(&mut w, name, &second).await;
    w.expect_silence(Duration::from_millis(500)).await;
}

/// watch-configmaps-closed-and-restarted
async fn watch_configmaps_closed_and_restarted(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let name = "e2e-watch-test-watch-closed";
    let label = "watch-closed-and-restarted";
    let mut broken = watch_cms(&api, "", &[label]).await;
    let created = api.create(&pp(), &labelled_cm(name, label)).await.unwrap();
    update_cm(&api, name, |cm| set_data(cm, "mutation", "1")).await;
    expect_added(&mut broken, &created).await;
    let last = match broken.next(WAIT).await {
        WatchEvent::Modified(cm) => cm,
        other => panic!("expected MODIFIED, got {}", describe(&other)),
    };
    drop(broken);

    let second = update_cm(&api, name, |cm| set_data(cm, "mutation", "2")).await;
    let mut restarted =
        watch_cms(&api, last.resource_version().as_deref().unwrap(), &[label]).await;
    api.delete(name, &DeleteParams::default()).await.unwrap();
    expect_modified(&mut restarted, &second).await;
    expect_deleted(&mut restarted, name, &second).await;
}

/// watch-configmaps-label-changed
async fn watch_configmaps_label_changed(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let name = "e2e-watch-test-label-changed";
    let label = "label-changed-and-restored";
    let mut w = watch_cms(&api, "", &[label]).await;
    let created = api.create(&pp(), &labelled_cm(name, label)).await.unwrap();
    let first = update_cm(&api, name, |cm| set_data(cm, "mutation", "1")).await;
    update_cm(&api, name, |cm| {
        cm.labels_mut()
            .insert(WATCH_LABEL.into(), "wrong-value".into());
    })
    .await;
    expect_added(&mut w, &created).await;
    expect_modified(&mut w, &first).await;
    expect_deleted(&mut w, name, &first).await;

    // No longer matching: changes are not delivered.
    update_cm(&api, name, |cm| set_data(cm, "mutation", "2")).await;
    w.expect_silence(Duration::from_secs(2)).await;

    let restored = update_cm(&api, name, |cm| {
        cm.labels_mut().insert(WATCH_LABEL.into(), label.into());
    })
    .await;
    let third = update_cm(&api, name, |cm| set_data(cm, "mutation", "3")).await;
    api.delete(name, &DeleteParams::default()).await.unwrap();
    expect_added(&mut w, &restored).await;
    expect_modified(&mut w, &third).await;
    expect_deleted(&mut w, name, &third).await;
}

/// watch-consistency: watches started at each event's resourceVersion all see the same
/// resourceVersions in the same order while a background task writes.
async fn watch_consistency_concurrent_watches_same_order(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let mut rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .expect("list resourceVersion");

    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce_configmap_events(api.clone(), stop.clone()));

    let wp = WatchParams::default().disable_bookmarks();
    let mut watchers: Vec<Watcher<ConfigMap>> = Vec::new();
    for _ in 0..100 {
        watchers.push(Watcher::start(&api, &wp, &rv).await);
        rv = next_cm_rv(&mut watchers[0]).await;
        for (i, w) in watchers.iter_mut().enumerate().skip(1) {
            let got = next_cm_rv(w).await;
            assert_eq!(
                got, rv,
                "watcher {i} saw resourceVersion {got}, the first watcher {rv}"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    producer.await.expect("producer");
}

async fn next_cm_rv(w: &mut Watcher<ConfigMap>) -> String {
    match w.next(Duration::from_secs(10)).await {
        WatchEvent::Added(cm) | WatchEvent::Modified(cm) | WatchEvent::Deleted(cm) => {
            cm.resource_version().expect("rv")
        }
        other => panic!("expected a configmap event, got {}", describe(&other)),
    }
}

/// watch.go's `produceConfigMapEvents`: create, update or delete every 5ms.
async fn produce_configmap_events(api: Api<ConfigMap>, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new();
    let mut existing: Vec<u64> = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let op = if existing.is_empty() { 0 } else { rng.below(3) };
        match op {
            0 => {
                api.create(
                    &pp(),
                    &obj(json!({"metadata": {"name": format!("cm-{i}")}})),
                )
                .await
                .expect("create");
                existing.push(i);
                i += 1;
            }
            1 => {
                let n = existing[rng.below(existing.len() as u64) as usize];
                let cm: ConfigMap = obj(
                    json!({"metadata": {"name": format!("cm-{n}")}, "data": {"n": i.to_string()}}),
                );
                i += 1;
                api.replace(&format!("cm-{n}"), &pp(), &cm)
                    .await
                    .expect("update");
            }
            _ => {
                let idx = rng.below(existing.len() as u64) as usize;
                api.delete(&format!("cm-{}", existing[idx]), &DeleteParams::default())
                    .await
                    .expect("delete");
                existing.remove(idx);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- test/e2e/apimachinery/chunking.go ----------------------------------------------

const TEMPLATES: usize = 400;

/// API chunking: limit/continue pages at one resourceVersion with remainingItemCount.
async fn api_chunking_returns_consistent_pages(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<PodTemplate> = Api::namespaced(client, &ns);
    futures::stream::iter(0..TEMPLATES)
        .for_each_concurrent(20, |i| {
            let api = api.clone();
            async move {
                let t: PodTemplate = obj(json!({
                    "metadata": {"name": format!("template-{i:04}")},
                    "template": {"spec": {"containers": [{"name": "test", "image": "test2"}]}},
                }));
                api.create(&pp(), &t)
                    .await
                    .unwrap_or_else(|e| panic!("template {i}: {e}"));
            }
        })
        .await;

    let mut rng = Rng::new();
    for _ in 0..3 {
        let mut found = 0;
        let mut first_rv: Option<String> = None;
        let mut token: Option<String> = None;
        loop {
            let limit = rng.below(TEMPLATES as u64 / 10) as u32 + 1;
            let mut lp = ListParams::default().limit(limit);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let list = api.list(&lp).await.unwrap();
            assert!(
                list.items.len() <= limit as usize,
                "{} items for limit {limit}",
                list.items.len()
            );
            let list_rv = list
                .metadata
                .resource_version
                .clone()
                .expect("list resourceVersion");
            assert_eq!(
                first_rv.get_or_insert(list_rv.clone()),
                &list_rv,
                "every page is read at the first page's resourceVersion"
            );
            match list.metadata.continue_.as_deref().filter(|c| !c.is_empty()) {
                None => assert_eq!(list.metadata.remaining_item_count, None),
                Some(_) => {
                    let remaining = list
                        .metadata
                        .remaining_item_count
                        .expect("remainingItemCount with a continue token");
                    assert_eq!(remaining as usize + list.items.len() + found, TEMPLATES);
                }
            }
            for item in &list.items {
                assert_eq!(item.name_any(), format!("template-{found:04}"));
                found += 1;
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => token = Some(c),
                None => break,
            }
        }
        assert_eq!(found, TEMPLATES);
    }
    let all = api
        .list(&ListParams::default().limit(TEMPLATES as u32 + 1))
        .await
        .unwrap();
    assert_eq!(all.items.len(), TEMPLATES);
    assert!(all.metadata.continue_.as_deref().unwrap_or("").is_empty());
}

// ---- server_version.go, namespace.go --------------------------------------------------

async fn server_version_is_numeric(ctx: Ctx) {
    let client = ctx.client.clone();
    let v = client.apiserver_version().await.expect("/version");
    assert!(
        !v.major.is_empty() && v.major.chars().all(|c| c.is_ascii_digit()),
        "major {:?}",
        v.major
    );
    let minor = v.minor.trim_end_matches('+');
    assert!(
        !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()),
        "minor {:?}",
        v.minor
    );
    assert!(
        v.git_version.starts_with('v'),
        "gitVersion {:?}",
        v.git_version
    );
}

async fn namespace_patching_adds_label(ctx: Ctx) {
    let client = ctx.client.clone();
    let name = ctx.ns.clone();
    let api: Api<Namespace> = Api::all(client);
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"testLabel": "testValue"}}})),
    )
    .await
    .expect("patching the namespace");
    let ns = api.get(&name).await.unwrap();
    assert_eq!(
        ns.labels().get("testLabel").map(String::as_str),
        Some("testValue"),
        "{:?}",
        ns.labels()
    );
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
}

// ---- test/e2e/common/node/lease.go ----------------------------------------------------

/// Go's `time.Time{}.Add(s)`: year 1 plus `s` seconds.
fn go_zero_plus(secs: i64) -> MicroTime {
    MicroTime(Timestamp::new(-62_135_596_800 + secs, 0).expect("timestamp"))
}

fn lease_spec(
    holder: &str,
    duration: i32,
    acquire: i64,
    renew: i64,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(duration),
        acquire_time: Some(go_zero_plus(acquire)),
        renew_time: Some(go_zero_plus(renew)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

async fn lease_api_is_available(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = Lease {
        metadata: obj(json!({"name": "lease"})),
        spec: Some(lease_spec("holder", 30, 2, 5, 0)),
    };
    let mut created = api.create(&pp(), &lease).await.expect("creating the lease");
    let read = api.get("lease").await.unwrap();
    assert_eq!(read.spec, lease.spec);

    created.spec = Some(lease_spec("holder2", 30, 20, 50, 1));
    api.replace("lease", &pp(), &created)
        .await
        .expect("updating the lease");
    let read = api.get("lease").await.unwrap();
    assert_eq!(read.spec, created.spec);

    let patched = lease_spec("holder3", 60, 50, 70, 2);
    let patch = json!({"spec": serde_json::to_value(&patched).unwrap()});
    api.patch("lease", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patching the lease");
    let read = api.get("lease").await.unwrap();
    assert_eq!(read.spec, Some(patched));

    let lease2 = Lease {
        metadata: obj(json!({"name": "lease2", "labels": {"deletecollection": "true"}})),
        spec: Some(lease_spec("holder", 30, 2, 5, 0)),
    };
    api.create(&pp(), &lease2)
        .await
        .expect("creating the second lease");
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("deletecollection=true"),
    )
    .await
    .expect("deletecollection");
    let left = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        left.items.iter().map(|l| l.name_any()).collect::<Vec<_>>(),
        ["lease"]
    );
    api.delete("lease", &DeleteParams::default())
        .await
        .expect("deleting the lease");
    assert_eq!(status_of(api.get("lease").await).code, 404);
    Api::<Lease>::all(client)
        .list(&ListParams::default())
        .await
        .expect("listing leases in all namespaces");
}

// ---- test/e2e/instrumentation/events.go and core_events.go ----------------------------

async fn event_listed(api: &Api<Event>, ns: &str, name: &str) -> bool {
    let list = api
        .list(&ListParams::default().labels("testevent-constant=true"))
        .await
        .expect("listing events");
    list.items
        .iter()
        .any(|e| e.name_any() == name && e.namespace().as_deref() == Some(ns))
}

fn without_server_fields(mut e: Event) -> Event {
    e.metadata.resource_version = None;
    e.metadata.managed_fields = None;
    e
}

/// events.k8s.io/v1 lifecycle: create, list (namespace and cluster), field selector,
/// strategic merge patch, update with a series, delete, deletecollection.
async fn events_api_lifecycle(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let all: Api<Event> = Api::all(client.clone());
    let name = "event-test";
    api.create(&pp(), &new_test_event(&ns, name, "testevent-constant"))
        .await
        .expect("creating the event");
    assert!(
        event_listed(&all, &ns, name).await,
        "event missing from the cluster-wide list"
    );
    assert!(
        event_listed(&api, &ns, name).await,
        "event missing from the namespace list"
    );
    let filtered = api
        .list(&ListParams::default().fields("reportingController=test-controller"))
        .await
        .unwrap();
    assert_eq!(
        filtered
            .items
            .iter()
            .map(|e| e.name_any())
            .collect::<Vec<_>>(),
        [name]
    );

    // The patch today's events.go sends: a series (the note is immutable through
    // events.k8s.io/v1, as Kubernetes' strict update validation has it).
    let mut test_event = without_server_fields(api.get(name).await.unwrap());
    let series = EventSeries {
        count: 2,
        last_observed_time: MicroTime(Timestamp::from_second(1_505_828_951).unwrap()),
    };
    let patch = json!({"series": serde_json::to_value(&series).unwrap()});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patching the event");
    let event = without_server_fields(api.get(name).await.unwrap());
    test_event.series = Some(series);
    assert_eq!(event, test_event, "the patch changed more than the series");
    let s = status_of(
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"note": "changed"})),
        )
        .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");

    test_event.series = Some(EventSeries {
        count: 100,
        last_observed_time: event_time(),
    });
    api.replace(name, &pp(), &test_event)
        .await
        .expect("updating the event");
    let event = without_server_fields(api.get(name).await.unwrap());
    assert_eq!(event, test_event, "the update was not stored as sent");

    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleting the event");
    assert!(!event_listed(&all, &ns, name).await);
    assert!(!event_listed(&api, &ns, name).await);
}

/// events.k8s.io/v1: deletecollection by label.
async fn events_api_delete_collection(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<Event> = Api::namespaced(client, &ns);
    for n in ["test-event-1", "test-event-2", "test-event-3"] {
        api.create(&pp(), &new_test_event(&ns, n, "testevent-set"))
            .await
            .expect("creating an event");
    }
    let set = ListParams::default().labels("testevent-set=true");
    assert_eq!(api.list(&set).await.unwrap().items.len(), 3);
    api.delete_collection(&DeleteParams::default(), &set)
        .await
        .expect("deletecollection");
    assert_eq!(api.list(&set).await.unwrap().items.len(), 0);
}

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

/// core/v1 Event lifecycle (core_events.go).
async fn core_events_lifecycle(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
    let all: Api<CoreEvent> = Api::all(client.clone());
    let name = "event-test";
    let listed = |list: kube::core::ObjectList<CoreEvent>| {
        list.items
            .iter()
            .any(|e| e.name_any() == name && e.namespace().as_deref() == Some(ns.as_str()))
    };
    api.create(&pp(), &core_event(&ns, name, "testevent-constant"))
        .await
        .expect("creating the event");
    let by_label = ListParams::default().labels("testevent-constant=true");
    assert!(
        listed(all.list(&by_label).await.unwrap()),
        "event missing from the all-namespaces list"
    );

    let message = "This is a test event - patched";
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"message": message})),
    )
    .await
    .expect("patching the event");
    let mut event = api.get(name).await.unwrap();
    assert_eq!(event.message.as_deref(), Some(message));

    let series = CoreEventSeries {
        count: Some(100),
        last_observed_time: Some(event_time()),
    };
    event.series = Some(series.clone());
    event.metadata.managed_fields = None;
    api.replace(name, &pp(), &event)
        .await
        .expect("updating the event");
    let event = api.get(name).await.unwrap();
    assert_eq!(event.series, Some(series));
    assert_eq!(event.message.as_deref(), Some(message));

    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleting the event");
    assert!(
        !listed(all.list(&by_label).await.unwrap()),
        "deleted event still listed"
    );
}

/// core/v1 Events: deletecollection by label.
async fn core_events_delete_collection(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<CoreEvent> = Api::namespaced(client, &ns);
    for n in ["test-event-1", "test-event-2", "test-event-3"] {
        api.create(&pp(), &core_event(&ns, n, "testevent-set"))
            .await
            .expect("creating an event");
    }
    let set = ListParams::default().labels("testevent-set=true");
    assert_eq!(api.list(&set).await.unwrap().items.len(), 3);
    api.delete_collection(&DeleteParams::default(), &set)
        .await
        .expect("deletecollection");
    assert_eq!(api.list(&set).await.unwrap().items.len(), 0);
}

// ---- test/e2e/common/node/configmap.go ------------------------------------------------

async fn configmap_lifecycle(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let name = "test-configmap-8f2d";
    let cm: ConfigMap = obj(
        json!({"metadata": {"name": name, "labels": {"test-configmap-static": "true"}}, "data": {"valueName": "value"}}),
    );
    api.create(&pp(), &cm)
        .await
        .expect("creating the configmap");
    let got = api.get(name).await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["valueName"], "value");
    assert_eq!(got.labels()["test-configmap-static"], "true");

    // The body Go's json.Marshal makes of a ConfigMap with labels and data (it carries
    // `creationTimestamp: null`, which must not remove the server's timestamp).
    let patch = json!({"metadata": {"creationTimestamp": null, "labels": {"test-configmap": "patched"}}, "data": {"valueName": "value1"}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patching the configmap");

    let list = Api::<ConfigMap>::all(client)
        .list(&ListParams::default().labels("test-configmap=patched"))
        .await
        .unwrap();
    let found = list
        .items
        .iter()
        .find(|c| c.name_any() == name && c.namespace().as_deref() == Some(ns.as_str()))
        .expect("patched configmap listed by label");
    assert_eq!(found.labels()["test-configmap-static"], "true");
    assert_eq!(found.labels()["test-configmap"], "patched");
    assert_eq!(found.data.as_ref().unwrap()["valueName"], "value1");
    assert!(
        found.metadata.creation_timestamp.is_some(),
        "creationTimestamp lost: {found:?}"
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("test-configmap-static=true"),
    )
    .await
    .expect("deletecollection");
    assert!(api
        .list(&ListParams::default().labels("test-configmap-static=true"))
        .await
        .unwrap()
        .items
        .is_empty());
}

// ---- test/e2e/network/service.go ------------------------------------------------------

/// Secure master service: `default/kubernetes` exists, on 443, with a ClusterIP.
async fn kubernetes_service_exists(ctx: Ctx) {
    let client = ctx.client.clone();
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("default/kubernetes");
    let spec = svc.spec.expect("spec");
    let port = &spec.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("https"), 443, Some("TCP"))
    );
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "clusterIP {:?} is not an IP",
        spec.cluster_ip
    );
    let all = Api::<Service>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(all
        .items
        .iter()
        .any(|s| s.name_any() == "kubernetes" && s.namespace().as_deref() == Some("default")));
}

/// Endpoint resource lifecycle, with the watch the upstream test uses.
async fn endpoint_lifecycle(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let all: Api<Endpoints> = Api::all(client.clone());
    let name = "testservice";
    let selector = ListParams::default().labels("test-endpoint-static=true");
    let list_rv = all
        .list(&selector)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default()
        .labels("test-endpoint-static=true")
        .disable_bookmarks();
    let mut w = Watcher::start(&api, &wp, &list_rv).await;

    let ep: Endpoints = obj(json!({
        "metadata": {"name": name, "labels": {"test-endpoint-static": "true"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}],
    }));
    let created = api
        .create(&pp(), &ep)
        .await
        .expect("creating the endpoints");
    assert!(matches!(w.next(WAIT).await, WatchEvent::Added(e) if e.name_any() == name));

    let mut found = all
        .list(&selector)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.name_any() == name && e.namespace().as_deref() == Some(ns.as_str()))
        .expect("listed");
    found
        .labels_mut()
        .insert("test-service".into(), "updated".into());
    api.replace(name, &pp(), &found)
        .await
        .expect("updating the endpoints");
    assert!(
        matches!(w.next(WAIT).await, WatchEvent::Modified(e) if e.labels().get("test-service").map(String::as_str) == Some("updated"))
    );

    let patch = json!({
        "metadata": {"labels": {"test-service": "patched"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080}]}],
    });
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patching the endpoints");
    assert!(
        rv(&patched) > rv(&created),
        "patched object should have a larger resourceVersion"
    );
    assert!(matches!(w.next(WAIT).await, WatchEvent::Modified(_)));
    let got = api.get(name).await.unwrap();
    assert_eq!(got.labels()["test-service"], "patched");
    let subset = &got.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.0.0.25");
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http-test"), 8080, Some("TCP"))
    );

    api.delete_collection(&DeleteParams::default(), &selector)
        .await
        .expect("deletecollection");
    assert!(matches!(w.next(WAIT).await, WatchEvent::Deleted(e) if e.name_any() == name));
    assert_eq!(status_of(api.get(name).await).code, 404);
}

// ---- test/e2e/apps/disruption.go (API operations; eviction is in drain.rs) -----------

fn pdb(name: &str, min_available: i32) -> PodDisruptionBudget {
    obj(json!({
        "metadata": {"name": name, "labels": {"e2e": "pdb"}},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
    }))
}

async fn pod_disruption_budget_api_operations(ctx: Ctx) {
    let api: Api<PodDisruptionBudget> = ctx.api();

    // create, update, patch, delete
    let created = api.create(&pp(), &pdb("web", 1)).await.expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.status.as_ref().unwrap().disruptions_allowed, 0);
    // The disruption controller writes the budget's status meanwhile: retry on conflict.
    let updated = update(&api, "web", |p| {
        p.spec.as_mut().unwrap().min_available = Some(IntOrString::Int(2));
    })
    .await;
    assert_eq!(
        updated.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "yes"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.annotations()["patched"], "yes");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "metadata changes keep it"
    );
}

/// The status subresource of a PodDisruptionBudget: update and patch change only status.
async fn pod_disruption_budget_status(ctx: Ctx) {
    let api: Api<PodDisruptionBudget> = ctx.api();
    let patched = api.create(&pp(), &pdb("web", 2)).await.expect("create");
    let mut with_status = patched.clone();
    with_status.status.as_mut().unwrap().disruptions_allowed = 3;
    with_status.spec.as_mut().unwrap().min_available = Some(IntOrString::Int(9));
    let s = api
        .replace_status("web", &pp(), &with_status)
        .await
        .expect("update status");
    assert_eq!(s.status.as_ref().unwrap().disruptions_allowed, 3);
    assert_eq!(
        s.spec.as_ref().unwrap().min_available,
        Some(IntOrString::Int(2)),
        "a status update leaves the spec"
    );
    let s = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"currentHealthy": 4}})),
        )
        .await
        .expect("patch status");
    assert_eq!(s.status.as_ref().unwrap().current_healthy, 4);
    let bad = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"expectedPods": -1}})),
        )
        .await;
    assert_eq!(status_of(bad).code, 422);
    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(status_of(api.get("web").await).code, 404);
}

/// PodDisruptionBudgets listed across namespaces and deleted as a collection.
async fn pod_disruption_budget_collection(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    for name in ["a", "b", "c"] {
        api.create(&pp(), &pdb(name, 1)).await.unwrap();
    }
    let everywhere: Api<PodDisruptionBudget> = Api::all(client.clone());
    let listed = everywhere
        .list(&ListParams::default().labels("e2e=pdb"))
        .await
        .expect("list in all namespaces");
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .map(|p| p.name_any())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deletecollection");
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-api-machinery] Watchers should observe add, update, and delete watch notifications on configmaps [Conformance]", watch_configmaps_with_multiple_watchers),
        test!("[sig-api-machinery] Watchers should be able to start watching from a specific resource version [Conformance]", watch_configmaps_from_resource_version),
        test!("[sig-api-machinery] Watchers should be able to restart watching from the last resource version observed by the previous watch [Conformance]", watch_configmaps_closed_and_restarted),
        test!("[sig-api-machinery] Watchers should observe an object deletion if it stops meeting the requirements of the selector [Conformance]", watch_configmaps_label_changed),
        test!("[sig-api-machinery] Watchers should receive events on concurrent watches in same order [Conformance]", watch_consistency_concurrent_watches_same_order),
        test!("[sig-api-machinery] Servers with support for API chunking should return chunks of results for list calls [Conformance]", api_chunking_returns_consistent_pages),
        test!("[sig-api-machinery] server version should find the server version [Conformance]", server_version_is_numeric),
        test!("[sig-api-machinery] Namespaces [Serial] should patch a Namespace [Conformance]", namespace_patching_adds_label),
        test!("[sig-node] Lease lease API should be available [Conformance]", lease_api_is_available),
        test!("[sig-instrumentation] Events API should ensure that an event can be fetched, patched, deleted, and listed [Conformance]", events_api_lifecycle),
        test!("[sig-instrumentation] Events API should delete a collection of events [Conformance]", events_api_delete_collection),
        test!("[sig-instrumentation] Events should manage the lifecycle of an event [Conformance]", core_events_lifecycle),
        test!("[sig-instrumentation] Events should delete a collection of events [Conformance]", core_events_delete_collection),
        test!("[sig-node] ConfigMap should run through a ConfigMap lifecycle [Conformance]", configmap_lifecycle),
        test!("[sig-network] Services should provide secure master service [Conformance]", kubernetes_service_exists),
        test!("[sig-network] Services should test the lifecycle of an Endpoint [Conformance]", endpoint_lifecycle),
        test!("[sig-apps] DisruptionController should create a PodDisruptionBudget [Conformance]", pod_disruption_budget_api_operations),
        test!("[sig-apps] DisruptionController should update/patch PodDisruptionBudget status [Conformance]", pod_disruption_budget_status),
        test!("[sig-apps] DisruptionController Listing PodDisruptionBudgets for all namespaces should list and delete a collection of PodDisruptionBudgets [Conformance]", pod_disruption_budget_collection),
    ]
}
