//! Watcher, store and shared informer against a real cluster.

use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use common::{client, configmap, eventually, namespace};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::watcher::{self, Event};
use keelson_client::runtime::{HandlerFuncs, Notification, SharedInformer, Store};
use keelson_client::{
    Api, ApiResource, DeleteParams, DynamicObject, KubeObject, ListParams, ObjectKey, Patch,
    PatchParams, PostParams,
};
use keelson_testkit::Cluster;
use serde_json::json;

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| {
    Cluster::start().expect("starting the test cluster (cargo build --workspace --bins first)")
});

async fn cluster() -> &'static Cluster {
    tokio::task::spawn_blocking(|| &*CLUSTER)
        .await
        .expect("cluster")
}

/// `key@resourceVersion` of everything in the store.
fn snapshot<K: KubeObject>(store: &Store<K>) -> BTreeSet<String> {
    store
        .list()
        .iter()
        .map(|o| format!("{}@{}", o.key(), o.resource_version().unwrap_or_default()))
        .collect()
}

async fn listed(api: &Api<ConfigMap>) -> BTreeSet<String> {
    api.list(&ListParams::default())
        .await
        .expect("list")
        .iter()
        .map(|o| format!("{}@{}", o.key(), o.resource_version().unwrap_or_default()))
        .collect()
}

fn describe(n: &Notification<ConfigMap>) -> String {
    let d = |o: &ConfigMap| {
        o.data
            .as_ref()
            .and_then(|d| d.get("v"))
            .cloned()
            .unwrap_or_default()
    };
    match n {
        Notification::Added(o) => format!("add {} {}", o.name(), d(o)),
        Notification::Updated { old, new } => {
            format!("update {} {}->{}", new.name(), d(old), d(new))
        }
        Notification::Deleted(o) => format!("delete {} {}", o.name(), d(o)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_sees_adds_updates_deletes_and_matches_a_list() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "informer").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    api.create(
        &pp,
        &configmap("pre-1", json!({"app": "web"}), json!({"v": "1"})),
    )
    .await
    .unwrap();
    api.create(
        &pp,
        &configmap("pre-2", json!({"app": "db"}), json!({"v": "1"})),
    )
    .await
    .unwrap();

    let informer = SharedInformer::new(api.clone(), watcher::Config::default());
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |o: Arc<ConfigMap>| l1.lock().unwrap().push(format!("add {}", o.name())))
            .on_update(move |old, new| {
                l2.lock().unwrap().push(format!(
                    "update {} {}->{}",
                    new.name(),
                    old.data.as_ref().unwrap()["v"],
                    new.data.as_ref().unwrap()["v"]
                ))
            })
            .on_delete(move |o| l3.lock().unwrap().push(format!("delete {}", o.name()))),
    );
    tokio::time::timeout(Duration::from_secs(20), informer.wait_for_sync())
        .await
        .expect("synced");
    assert!(informer.has_synced());
    let store = informer.store();
    assert_eq!(
        snapshot(&store),
        listed(&api).await,
        "store after sync = list"
    );

    // A late subscriber first gets the current objects.
    let mut sub = informer.subscribe();
    let mut first: Vec<String> = Vec::new();
    for _ in 0..2 {
        first.push(describe(
            &tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap()
                .unwrap(),
        ));
    }
    assert_eq!(first, ["add pre-1 1", "add pre-2 1"]);

    api.create(
        &pp,
        &configmap("x", json!({"app": "web"}), json!({"v": "1"})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("pre-1", &DeleteParams::default()).await.unwrap();

    let mut next = Vec::new();
    for _ in 0..3 {
        let n = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("notification")
            .unwrap();
        next.push(describe(&n));
    }
    assert_eq!(next, ["add x 1", "update x 1->2", "delete pre-1 1"]);

    let handler_log = eventually(Duration::from_secs(10), "handler callbacks", || {
        let log = log.clone();
        async move {
            let l = log.lock().unwrap().clone();
            (l.len() >= 5).then_some(l)
        }
    })
    .await;
    assert_eq!(
        handler_log,
        [
            "add pre-1",
            "add pre-2",
            "add x",
            "update x 1->2",
            "delete pre-1"
        ]
    );

    assert_eq!(
        snapshot(&store),
        listed(&api).await,
        "store after changes = list"
    );
    let web = LabelSelector::parse("app=web").unwrap();
    let names: Vec<String> = store
        .list_selected(&web)
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    assert_eq!(names, ["x"]);
    assert_eq!(store.list_namespace(&ns).len(), 2);
    assert!(store.list_namespace("default").is_empty());
    let x = store
        .get(&ObjectKey::new(Some(&ns), "x"))
        .expect("x cached");
    assert_eq!(x.data.as_ref().unwrap()["v"], "2");
    assert!(store.get_by_name(Some(&ns), "pre-1").is_none());
    assert_eq!(informer.stats().lists, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_lists_in_pages_then_follows() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "pages").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i}"), json!({}), json!({})),
        )
        .await
        .unwrap();
    }
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default().page_size(2)).boxed();
    async fn next(
        s: &mut futures::stream::BoxStream<'static, keelson_client::Result<Event<ConfigMap>>>,
    ) -> Event<ConfigMap> {
        tokio::time::timeout(Duration::from_secs(20), s.next())
            .await
            .expect("event")
            .expect("stream")
            .expect("no error")
    }
    assert!(matches!(next(&mut stream).await, Event::Init));
    let mut names = Vec::new();
    loop {
        match next(&mut stream).await {
            Event::InitApply(o) => names.push(o.name().to_string()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        names,
        ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"],
        "every page, in order"
    );
    api.delete("cm-2", &DeleteParams::default()).await.unwrap();
    match next(&mut stream).await {
        Event::Delete(o) => assert_eq!(o.name(), "cm-2"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_and_dynamic_informers() {
    let c = cluster().await;
    let client = client(&c.kubeconfig);
    let ns = namespace(&client, "dyninformer").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &configmap("w", json!({"app": "web"}), json!({})),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &configmap("d", json!({"app": "db"}), json!({})),
    )
    .await
    .unwrap();

    let web = SharedInformer::new(api.clone(), watcher::Config::default().labels("app=web"));
    let ar = ApiResource::erase::<ConfigMap>();
    let dynamic = SharedInformer::new(
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar),
        watcher::Config::default(),
    );
    tokio::time::timeout(Duration::from_secs(20), web.wait_for_sync())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), dynamic.wait_for_sync())
        .await
        .unwrap();
    let names = |s: Vec<Arc<ConfigMap>>| s.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
    assert_eq!(names(web.store().list()), ["w"]);
    assert_eq!(dynamic.store().len(), 2);

    // A label change moves an object into the selected informer.
    api.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    let store = web.store();
    eventually(Duration::from_secs(10), "d selected", || {
        let store = store.clone();
        async move { (store.len() == 2).then_some(()) }
    })
    .await;
    let dstore = dynamic.store();
    eventually(
        Duration::from_secs(10),
        "dynamic store sees the label",
        || {
            let dstore = dstore.clone();
            let ns = ns.clone();
            async move {
                let d = dstore.get_by_name(Some(&ns), "d")?;
                (d.label("app") == Some("web")).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        dstore.get_by_name(Some(&ns), "d").unwrap()["kind"],
        "ConfigMap"
    );
}
