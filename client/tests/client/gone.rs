//! 410 Gone after etcd compaction: the typed error, the ERROR watch event, and an
//! informer that recovers by listing again.
//!
//! An apiserver serves watches from its watch cache, which holds every event since the
//! apiserver started, compacted or not; only a watch from before that window goes to
//! etcd and can get 410. So these tests start a second apiserver after the writes that
//! are to be compacted, and watch through it.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{client, configmap, eventually, namespace, start_cluster, Proxy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use keelson_client::runtime::{watcher, Notification, SharedInformer};
use keelson_client::{
    Api, ApiError, DeleteParams, KubeObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use keelson_testkit::{ApiserverOptions, Cluster};
use serde_json::json;

fn compacting() -> ApiserverOptions {
    ApiserverOptions {
        extra_args: vec!["--etcd-compaction-interval=1s".into()],
        ..Default::default()
    }
}

/// Start another apiserver (blocking) and return a kubeconfig for it.
fn add_apiserver(cluster: &mut Cluster) -> std::path::PathBuf {
    let i = tokio::task::block_in_place(|| cluster.add_apiserver()).expect("second apiserver");
    let path = cluster.dir.path().join(format!("apiserver-{i}.kubeconfig"));
    let url = format!("https://127.0.0.1:{}", cluster.apiservers[i].port);
    cluster.write_kubeconfig(&path, &url).expect("kubeconfig");
    path
}

/// Write something elsewhere, so that the compactor (which compacts to the revision it
/// saw one interval earlier) moves past everything before now.
async fn tick(api: &Api<ConfigMap>, n: u32) {
    let name = "ticker";
    if api.get_opt(name).await.unwrap().is_none() {
        api.create(
            &PostParams::default(),
            &configmap(name, json!({}), json!({})),
        )
        .await
        .unwrap();
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": n.to_string()}})),
    )
    .await
    .unwrap();
}

/// Wait until a watch from `rv` through `api` is refused with an ERROR event, and
/// return that error.
async fn wait_until_gone(api: &Api<ConfigMap>, ticker: &Api<ConfigMap>, rv: &str) -> ApiError {
    let mut n = 0;
    eventually(
        Duration::from_secs(40),
        "the resourceVersion to be compacted",
        || {
            n += 1;
            let n = n;
            async move {
                tick(ticker, n).await;
                let mut w = api
                    .watch(&WatchParams::default(), rv)
                    .await
                    .expect("watch opens");
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
                        Ok(Some(Ok(WatchEvent::Error(e)))) => return Some(e),
                        Ok(Some(Ok(WatchEvent::Bookmark(_)))) => continue,
                        // Events still come from rv: not compacted yet.
                        _ => return None,
                    }
                }
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_continue_from_compacted_versions_are_gone() {
    let mut cluster = start_cluster(|| Cluster::start_with(1, compacting())).await;
    let c1 = client(&cluster.kubeconfig);
    let ns = namespace(&c1, "gone").await;
    let api: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns);
    let ticker: Api<ConfigMap> = Api::namespaced(c1.clone(), "default");
    let first = api
        .create(
            &PostParams::default(),
            &configmap("a", json!({}), json!({})),
        )
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &configmap("b", json!({}), json!({})),
    )
    .await
    .unwrap();
    let old_rv = first.resource_version().unwrap().to_string();
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page
        .metadata
        .continue_token
        .clone()
        .expect("continue token");
    for n in 0..3 {
        tick(&ticker, n).await;
    }

    let kc2 = add_apiserver(&mut cluster);
    let api2: Api<ConfigMap> = Api::namespaced(client(&kc2), &ns);
    let e = wait_until_gone(&api2, &ticker, &old_rv).await;
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
    assert!(
        e.message.contains("too old resource version"),
        "{}",
        e.message
    );

    // The stream ends after the ERROR event.
    let mut w = api2.watch(&WatchParams::default(), &old_rv).await.unwrap();
    let mut rest = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("stream ends")
    {
        rest.push(ev.expect("event"));
    }
    assert!(
        matches!(rest.last(), Some(WatchEvent::Error(e)) if e.code == 410),
        "ends with the 410 ERROR: {rest:?}"
    );

    // A continue token from before the compaction: the typed error.
    let r = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await;
    let err = r.expect_err("expired continue token");
    assert!(err.is_gone(), "{err:?}");
    assert_eq!(err.code(), Some(410));
    assert!(err.to_string().contains("continue"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_relists_after_gone() {
    let mut cluster = start_cluster(|| Cluster::start_with(1, compacting())).await;
    let direct = client(&cluster.kubeconfig);
    let ns = namespace(&direct, "relist").await;
    let api: Api<ConfigMap> = Api::namespaced(direct.clone(), &ns);
    let ticker: Api<ConfigMap> = Api::namespaced(direct.clone(), "default");
    let pp = PostParams::default();
    for name in ["keep", "change", "remove"] {
        api.create(&pp, &configmap(name, json!({}), json!({"v": "1"})))
            .await
            .unwrap();
    }

    // The informer reaches the apiserver through a proxy that can cut it off.
    let proxy = Proxy::start(cluster.apiservers[0].port).await;
    let via_proxy = client(&proxy.kubeconfig(&cluster));
    let informer = SharedInformer::new(
        Api::<ConfigMap>::namespaced(via_proxy, &ns),
        watcher::Config::default().backoff(Duration::from_millis(100), Duration::from_secs(1)),
    );
    tokio::time::timeout(Duration::from_secs(20), informer.wait_for_sync())
        .await
        .expect("synced");
    let store = informer.store();
    assert_eq!(store.len(), 3);
    let mut sub = informer.subscribe();
    for _ in 0..3 {
        assert!(matches!(sub.next().await, Some(Notification::Added(_))));
    }

    // While it is cut off: one object added, one changed, one removed.
    proxy.switch(None);
    // Nothing the informer saw is newer than this.
    let seen_before = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    api.create(&pp, &configmap("added", json!({}), json!({"v": "1"})))
        .await
        .unwrap();
    api.patch(
        "change",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("remove", &DeleteParams::default())
        .await
        .unwrap();

    // A new apiserver's watch cache starts after those writes; once etcd has compacted
    // them, the informer's resumed watch through it gets 410.
    let kc2 = add_apiserver(&mut cluster);
    let api2: Api<ConfigMap> = Api::namespaced(client(&kc2), &ns);
    let e = wait_until_gone(&api2, &ticker, &seen_before).await;
    assert_eq!(e.code, 410);
    assert!(
        store.get_by_name(Some(&ns), "added").is_none(),
        "cut off: nothing new yet"
    );
    proxy.switch(Some(cluster.apiservers[1].port));

    let want: BTreeSet<String> = ["added", "change", "keep"].map(String::from).into();
    eventually(Duration::from_secs(30), "the informer to relist", || {
        let store = store.clone();
        let want = want.clone();
        async move {
            let names: BTreeSet<String> =
                store.list().iter().map(|o| o.name().to_string()).collect();
            (names == want).then_some(())
        }
    })
    .await;
    let stats = informer.stats();
    assert!(stats.lists >= 2, "listed again: {stats:?}");
    let last = stats.last_error.clone().unwrap_or_default();
    assert!(last.contains("410"), "the watch failed with 410: {stats:?}");
    let changed = store.get_by_name(Some(&ns), "change").unwrap();
    assert_eq!(changed.data.as_ref().unwrap()["v"], "2");

    // The relist reached subscribers as the difference to what they had.
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("notification")
            .unwrap();
        got.push(match n {
            Notification::Added(o) => format!("add {}", o.name()),
            Notification::Updated { new, .. } => format!("update {}", new.name()),
            Notification::Deleted(o) => format!("delete {}", o.name()),
        });
    }
    got.sort();
    assert_eq!(got, ["add added", "delete remove", "update change"]);

    // And it follows the watch again, now through the second apiserver.
    api.create(&pp, &configmap("after", json!({}), json!({})))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the informer to see a new object",
        || {
            let store = store.clone();
            let ns = ns.clone();
            async move { store.get_by_name(Some(&ns), "after").map(|_| ()) }
        },
    )
    .await;
    let listed: BTreeSet<String> = api2
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|o| format!("{}@{}", o.name(), o.resource_version().unwrap()))
        .collect();
    let cached: BTreeSet<String> = store
        .list()
        .iter()
        .map(|o| format!("{}@{}", o.name(), o.resource_version().unwrap()))
        .collect();
    assert_eq!(cached, listed, "store = list after recovery");
}
