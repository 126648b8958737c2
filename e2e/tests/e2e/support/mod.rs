//! Shared by the kube-rs e2e tests (`conformance_api`, `bad_input`): kube-rs clients for
//! a test cluster, raw HTTP requests through them, and watch helpers.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use keelson_testkit::Cluster;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use std::path::Path;

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

// Watches, Status errors, typed objects from JSON and a small random generator are the
// conformance runner's (one copy of each).
pub use keelson_conformance::framework::{describe, obj, status_of, Watcher};
