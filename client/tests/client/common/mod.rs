//! Shared by the integration tests: clusters, clients, namespaces, a TCP proxy, waits.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keelson_client::{Api, Client, PostParams, WatchEvent};
use keelson_testkit::Cluster;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Start a cluster on a blocking thread (starting one blocks for a while).
pub async fn start_cluster(
    f: impl FnOnce() -> anyhow::Result<Cluster> + Send + 'static,
) -> Cluster {
    tokio::task::spawn_blocking(f)
        .await
        .expect("join")
        .expect("starting the test cluster (cargo build --workspace --bins first)")
}

/// A client for a kubeconfig (must run inside the test's runtime).
pub fn client(kubeconfig: &std::path::Path) -> Client {
    Client::from_kubeconfig(kubeconfig).expect("client from kubeconfig")
}

/// Create a namespace and return its name.
pub async fn namespace(client: &Client, name: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name.to_string()
}

pub fn configmap(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .expect("configmap")
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next `n` non-bookmark events of a watch (panics after `timeout`).
pub async fn next_events<K: std::fmt::Debug>(
    stream: &mut (impl Stream<Item = keelson_client::Result<WatchEvent<K>>> + Unpin),
    n: usize,
    timeout: Duration,
) -> Vec<WatchEvent<K>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} events: {out:?}", out.len()))
            .unwrap_or_else(|| panic!("watch ended after {} of {n} events: {out:?}", out.len()))
            .expect("watch event");
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            out.push(ev);
        }
    }
    out
}

/// A TCP forwarder on loopback whose backend can be switched or cut, so that a client
/// with one server URL can be moved between apiservers (TLS passes through untouched).
pub struct Proxy {
    pub port: u16,
    backend: Arc<Mutex<Option<u16>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(backend: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let backend = Arc::new(Mutex::new(Some(backend)));
        let conns = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (b, c) = (backend.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                // No backend: close at once (the client sees a failed handshake).
                let Some(to) = *b.lock().unwrap() else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            backend,
            conns,
            accept,
        }
    }

    /// Send new connections to `backend` (or refuse them), and cut the open ones.
    pub fn switch(&self, backend: Option<u16>) {
        *self.backend.lock().unwrap() = backend;
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// A kubeconfig for `cluster` that points at this proxy.
    pub fn kubeconfig(&self, cluster: &Cluster) -> PathBuf {
        let path = cluster
            .dir
            .path()
            .join(format!("proxy-{}.kubeconfig", self.port));
        cluster
            .write_kubeconfig(&path, &format!("https://127.0.0.1:{}", self.port))
            .expect("proxy kubeconfig");
        path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.switch(None);
    }
}
