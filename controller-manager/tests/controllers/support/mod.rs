//! Setup and helpers shared by the controller-manager integration tests: a test
//! cluster with the controller manager running against it, polling, and a few pod
//! chores a kubelet would do.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{
    Api, Client, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use keelson_controller_manager::{Context, ControllerManagerOptions};
use keelson_testkit::Cluster;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A test cluster (apiserver and etcd) and a client for it.
pub async fn cluster() -> (Cluster, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("join")
        .expect("starting the test cluster (cargo build -p keelson-apiserver first)");
    let client = Client::from_kubeconfig(&cluster.kubeconfig).expect("client");
    (cluster, client)
}

/// Options running just `controllers`.
pub fn options(controllers: &[&str]) -> ControllerManagerOptions {
    ControllerManagerOptions {
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

pub fn context(client: &Client, options: ControllerManagerOptions) -> Context {
    Context::new(client.clone(), options, &mut Registry::default())
}

/// A test cluster with the controller manager running `options` against it.
pub async fn start_with(
    options: ControllerManagerOptions,
) -> (Cluster, Client, tokio::task::JoinHandle<()>) {
    let (cluster, client) = cluster().await;
    let task = tokio::spawn(keelson_controller_manager::run(context(&client, options)));
    (cluster, client, task)
}

/// A test cluster with the controller manager running `controllers` against it.
pub async fn start(controllers: &[&str]) -> (Cluster, Client, tokio::task::JoinHandle<()>) {
    start_with(options(controllers)).await
}

/// Calls `f` every `every` until it returns `Some`; panics after `timeout`.
pub async fn poll<T, F, Fut>(every: Duration, timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] every 100 ms for up to `timeout`.
pub async fn eventually_within<T, F, Fut>(timeout: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(Duration::from_millis(100), timeout, what, f).await
}

/// [`poll`] every 100 ms for up to 20 s.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(20), what, f).await
}

/// Creates the object `obj` describes.
pub async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// Marks a pod Running and Ready through the status subresource, as a kubelet would.
pub async fn mark_ready(pods: &Api<Pod>, name: &str) -> keelson_client::Result<Pod> {
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
}

/// Sets a pod's phase through the status subresource.
pub async fn set_phase(pods: &Api<Pod>, name: &str, phase: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

/// Whether the object's controller reference points at `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

/// The pods not being deleted whose controller is `owner_uid`.
pub async fn owned_pods(pods: &Api<Pod>, owner_uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && controlled_by(&p.metadata, owner_uid)
        })
        .collect()
}

/// Every pod ADDED and DELETED event from now on, each recorded as `entry` makes it.
pub async fn record_pod_events<T: Send + 'static>(
    pods: &Api<Pod>,
    entry: impl Fn(&'static str, Pod) -> T + Send + 'static,
) -> Arc<Mutex<Vec<T>>> {
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let mut stream = pods.watch(&WatchParams::default(), &rv).await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let out = log.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            let (kind, pod) = match ev {
                WatchEvent::Added(p) => ("ADDED", p),
                WatchEvent::Deleted(p) => ("DELETED", p),
                _ => continue,
            };
            out.lock().unwrap().push(entry(kind, pod));
        }
    });
    log
}
