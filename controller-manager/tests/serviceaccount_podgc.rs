//! The ServiceAccount controller (every namespace gets `default`, recreated when
//! deleted) and the pod garbage collector (terminated pods beyond the threshold, oldest
//! first; pods bound to a node that no longer exists) against a real apiserver and etcd.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use keelson_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use keelson_controller_manager::controllers::podgc;
use keelson_controller_manager::{Context, ControllerManagerOptions};
use keelson_testkit::Cluster;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

async fn cluster() -> (Cluster, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap();
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    (cluster, client)
}

fn context(client: &Client, controllers: &[&str], gc_threshold: usize) -> Context {
    let options = ControllerManagerOptions {
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        terminated_pod_gc_threshold: gc_threshold,
        ..Default::default()
    };
    Context::new(client.clone(), options, &mut Registry::default())
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    let (_cluster, client) = cluster().await;
    let _controllers = tokio::spawn(keelson_controller_manager::run(context(
        &client,
        &["serviceaccount"],
        0,
    )));
    let default_sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually("default/default", || async {
        default_sa.get_opt("default").await.unwrap()
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "team"}})).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let first = eventually("team/default", || async {
        accounts.get_opt("default").await.unwrap()
    })
    .await;
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = eventually("team/default recreated", || async {
        accounts
            .get_opt("default")
            .await
            .unwrap()
            .filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));
}

async fn set_phase(pods: &Api<Pod>, name: &str, phase: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

fn pod(name: &str, node: Option<&str>) -> Value {
    json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "containers": [{"name": "c", "image": "nginx"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_deletes_the_oldest_terminated_pods_and_pods_of_missing_nodes() {
    let (_cluster, client) = cluster().await;
    let ctx = context(&client, &[], 2);
    let timing = podgc::Timing {
        period: Duration::from_millis(300),
        quarantine: Duration::from_secs(1),
    };
    let _gc = tokio::spawn(podgc::run_with(ctx, timing));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    create(&nodes, json!({"metadata": {"name": "real-node"}})).await;

    // Created oldest first, with names in the opposite order: creation time decides.
    for name in ["d", "c", "b", "a"] {
        create(&pods, pod(name, Some("real-node"))).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    for name in ["d", "c", "b", "a"] {
        set_phase(&pods, name, "Succeeded").await;
    }
    eventually("the two oldest terminated pods deleted", || async {
        let left: Vec<String> = pods
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        (left == ["a", "b"]).then_some(())
    })
    .await;

    // A pod bound to a node that does not exist goes after the quarantine; one on a
    // node that exists stays.
    create(&pods, pod("on-ghost", Some("ghost-node"))).await;
    create(&pods, pod("on-real", Some("real-node"))).await;
    let created = Instant::now();
    eventually("the pod of the missing node deleted", || async {
        pods.get_opt("on-ghost")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        created.elapsed() >= Duration::from_secs(1),
        "deleted only after the quarantine"
    );
    assert!(pods.get_opt("on-real").await.unwrap().is_some());
    assert!(pods.get_opt("a").await.unwrap().is_some());
}
