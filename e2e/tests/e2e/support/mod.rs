//! Shared by the kube-rs e2e tests (`conformance_api`, `bad_input`): kube-rs clients for
//! a test cluster, raw HTTP requests through them, and watch helpers.
#![allow(dead_code)]

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use keelson_testkit::Cluster;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config};
use serde_json::{json, Value};
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// kube-rs' rustls needs a process-wide crypto provider.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn config_from(kubeconfig: &Path) -> Config {
    install_crypto();
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading the cluster's kubeconfig");
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config")
}

/// A client with the cluster's admin client certificate.
pub async fn client_for(c: &Cluster) -> Client {
    client_from(&c.kubeconfig).await
}

pub async fn client_from(kubeconfig: &Path) -> Client {
    let mut cfg = config_from(kubeconfig).await;
    // Tests count on every status code reaching them, 503 and 429 included.
    cfg.default_retry = false;
    Client::try_from(cfg).expect("kube client")
}

/// The shared cluster of this test binary, and an admin client for it. The cluster is
/// started on a blocking thread (starting it blocks for a while).
pub async fn shared() -> (&'static Cluster, Client) {
    let c: &'static Cluster = tokio::task::spawn_blocking(|| &*keelson_e2e::CLUSTER)
        .await
        .expect("cluster");
    (c, client_for(c).await)
}

/// A client that trusts the cluster CA but presents no credentials; `token` adds a
/// bearer token to every request.
pub async fn client_without_cert(c: &Cluster, token: Option<&str>) -> Client {
    let mut cfg = config_from(&c.kubeconfig).await;
    cfg.auth_info = Default::default();
    cfg.default_retry = false;
    if let Some(t) = token {
        cfg.headers.push((
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header value"),
        ));
    }
    Client::try_from(cfg).expect("kube client")
}

/// Create a namespace for one test (through kube-rs) and return its name.
pub async fn namespace(client: &Client, name: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name.to_string()
}

/// The `metav1.Status` of a failed kube-rs call.
pub fn status_of<T: std::fmt::Debug>(r: kube::Result<T>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error (a Status), got {other:?}"),
    }
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct Raw {
    pub code: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }

    /// Assert a `metav1.Status` failure with this code and reason; returns the Status.
    pub fn expect_status(&self, code: u16, reason: &str) -> Value {
        assert_eq!(self.code, code, "HTTP status; body: {}", self.body);
        let s = self.json();
        assert_eq!(s["kind"], "Status", "{s}");
        assert_eq!(s["status"], "Failure", "{s}");
        assert_eq!(s["code"], code, "{s}");
        assert_eq!(s["reason"], reason, "{s}");
        s
    }

    pub fn warnings(&self) -> Vec<String> {
        self.headers
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    }
}

/// Send one request through `client` (its TLS and credentials) and return the response
/// whatever its status.
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Vec<u8>>,
) -> Raw {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, "application/json");
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    let req = b
        .body(kube::client::Body::from(body.into()))
        .expect("request");
    let resp = client
        .send(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (parts, body) = resp.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .expect("response body")
        .to_bytes();
    Raw {
        code: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get_json(client: &Client, path: &str) -> Value {
    let r = raw(client, "GET", path, None, Vec::new()).await;
    assert_eq!(r.code, 200, "GET {path}: {}", r.body);
    r.json()
}

type EventStream<K> = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<K>>> + Send>>;

/// One open watch.
pub struct Watcher<K> {
    stream: EventStream<K>,
}

impl<K> Watcher<K>
where
    K: Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    pub async fn start(api: &Api<K>, wp: &WatchParams, rv: &str) -> Self
    where
        K: kube::Resource,
    {
        let stream = api
            .watch(wp, rv)
            .await
            .unwrap_or_else(|e| panic!("starting a watch at {rv:?}: {e}"));
        Watcher {
            stream: stream.boxed(),
        }
    }

    /// The next event (bookmarks included) within `within`; None on timeout, panics when
    /// the watch ends or fails.
    pub async fn next_within(&mut self, within: Duration) -> Option<WatchEvent<K>> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Err(_) => None,
            Ok(None) => panic!("watch closed unexpectedly"),
            Ok(Some(Err(e))) => panic!("watch failed: {e}"),
            Ok(Some(Ok(ev))) => Some(ev),
        }
    }

    /// The next event that is not a bookmark; panics after `within`.
    pub async fn next(&mut self, within: Duration) -> WatchEvent<K> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(WatchEvent::Bookmark(_)) => continue,
                Some(ev) => return ev,
                None => panic!("no watch event within {within:?}"),
            }
        }
    }

    /// Assert that nothing but bookmarks arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                None | Some(WatchEvent::Bookmark(_)) => {}
                Some(ev) => panic!("unexpected watch event: {}", describe(&ev)),
            }
        }
    }
}

/// `ADDED <object>` for failure messages.
pub fn describe<K: std::fmt::Debug>(ev: &WatchEvent<K>) -> String {
    match ev {
        WatchEvent::Added(o) => format!("ADDED {o:?}"),
        WatchEvent::Modified(o) => format!("MODIFIED {o:?}"),
        WatchEvent::Deleted(o) => format!("DELETED {o:?}"),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {s:?}"),
    }
}

/// Build a typed object from JSON (tests read better with `json!` manifests).
pub fn obj<K: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("test manifest does not decode: {e}"))
}

/// A small pseudo-random generator (no extra dependency), seeded from the clock.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(seed | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}
