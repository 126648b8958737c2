//! What every test uses: a kube-rs client for the cluster under test (no Keelson code, so
//! the runner works against any Kubernetes), the test's namespace, pod helpers modelled on
//! the Go e2e framework (`TestContainerOutput`, `WaitForPodCondition`), and a watch reader.

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config};
use serde_json::{json, Value};
use std::hash::BuildHasher;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a pod may take to reach a state a test waits for.
pub const POD_START: Duration = Duration::from_secs(90);

/// A client for the cluster: from `kubeconfig`, else from the environment
/// (KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    // kube-rs' rustls needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = match kubeconfig {
        Some(p) => {
            let kc =
                Kubeconfig::read_from(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    // Tests assert on status codes: every one must reach them, 429 and 503 included.
    cfg.default_retry = false;
    Ok(Client::try_from(cfg)?)
}

/// A namespace name for a test: a slug of its codename and a random suffix, as the Go
/// framework's `<basename>-<random>`.
pub fn namespace_name(codename: &str) -> String {
    let mut slug = String::new();
    let mut depth = 0;
    for c in codename.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 && c.is_ascii_alphanumeric() => slug.push(c.to_ascii_lowercase()),
            _ if depth == 0 && !slug.ends_with('-') && !slug.is_empty() => slug.push('-'),
            _ => {}
        }
    }
    slug.truncate(40);
    let slug = slug.trim_end_matches('-');
    format!("{slug}-{}", random_suffix())
}

fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut n = std::collections::hash_map::RandomState::new()
        .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let c = alphabet[(n % alphabet.len() as u64) as usize] as char;
            n /= alphabet.len() as u64;
            c
        })
        .collect()
}

pub async fn create_namespace(client: &Client, name: &str) -> kube::Result<()> {
    let ns: Namespace = obj(
        json!({"metadata": {"name": name, "labels": {"e2e-framework": "keelson-conformance"}}}),
    );
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map(|_| ())
}

/// Delete the namespace (the cluster removes its contents in the background).
pub async fn delete_namespace(client: &Client, name: &str) -> kube::Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// One test's view of the cluster.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    /// The test's own namespace, deleted after it.
    pub ns: String,
    /// The busybox-like image containers run.
    pub image: String,
}

impl Ctx {
    pub fn new(client: Client, ns: String, image: String) -> Self {
        Ctx { client, ns, image }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        self.api()
    }

    /// A container of the test image running `sh -c script`.
    pub fn sh(&self, name: &str, script: &str) -> Value {
        json!({
            "name": name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
        })
    }

    /// A container that runs until it is told to stop (SIGTERM ends it at once; a plain
    /// `sleep` as PID 1 would ignore it and hold the pod for its grace period).
    pub fn sleeper(&self, name: &str) -> Value {
        self.sh(name, "trap 'exit 0' TERM; while true; do sleep 1; done")
    }

    /// A pod named `name` with `spec` (merged over a one-shot default: restartPolicy Never).
    pub fn pod(&self, name: &str, spec: Value) -> Pod {
        let mut v = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5},
        });
        merge(&mut v["spec"], spec);
        obj(v)
    }

    pub async fn create_pod(&self, pod: &Pod) -> Pod {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"))
    }

    pub async fn get_pod(&self, name: &str) -> Pod {
        self.pods()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading pod {name}: {e}"))
    }

    /// Poll the pod until `pred` holds and return it; panics after `within` with the pod's
    /// status.
    pub async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        within: Duration,
        pred: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let deadline = tokio::time::Instant::now() + within;
        let mut last: Option<Pod> = None;
        loop {
            if let Ok(p) = self.pods().get(name).await {
                if pred(&p) {
                    return p;
                }
                last = Some(p);
            }
            if tokio::time::Instant::now() >= deadline {
                let status = last
                    .and_then(|p| p.status)
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .unwrap_or_else(|| "(pod not found)".into());
                panic!("pod {name}: {what}: not within {within:?}; status: {status}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Wait until the pod is gone from the API.
    pub async fn wait_pod_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + POD_START;
        loop {
            match self.pods().get(name).await {
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                _ if tokio::time::Instant::now() >= deadline => {
                    panic!("pod {name} still exists after {POD_START:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    pub async fn wait_running(&self, name: &str) -> Pod {
        self.wait_pod(name, "Running", POD_START, |p| phase(p) == "Running")
            .await
    }

    pub async fn wait_ready(&self, name: &str) -> Pod {
        self.wait_pod(name, "Running and Ready", POD_START, |p| {
            phase(p) == "Running" && condition(p, "Ready") == Some(true)
        })
        .await
    }

    /// Wait for Succeeded or Failed (the pod must end).
    pub async fn wait_finished(&self, name: &str) -> Pod {
        self.wait_pod(name, "Succeeded or Failed", POD_START, |p| {
            matches!(phase(p).as_str(), "Succeeded" | "Failed")
        })
        .await
    }

    pub async fn logs(&self, pod: &str, container: &str) -> String {
        let lp = LogParams {
            container: Some(container.into()),
            ..Default::default()
        };
        self.pods()
            .logs(pod, &lp)
            .await
            .unwrap_or_else(|e| panic!("logs of {pod}/{container}: {e}"))
    }

    /// Wait until the container's log contains `want`; its log otherwise.
    pub async fn wait_log(&self, pod: &str, container: &str, want: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lp = LogParams {
                container: Some(container.into()),
                ..Default::default()
            };
            let log = self.pods().logs(pod, &lp).await.unwrap_or_default();
            if log.contains(want) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("log of {pod}/{container} has no {want:?} within {within:?}:\n{log}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The Go framework's `TestContainerOutput`: create the pod, wait for it to succeed,
    /// and find every `expected` string in the container's log.
    pub async fn expect_output(&self, pod: Pod, container: &str, expected: &[&str]) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.create_pod(&pod).await;
        let done = self.wait_finished(&name).await;
        let log = self.logs(&name, container).await;
        assert_eq!(
            phase(&done),
            "Succeeded",
            "pod {name} failed; log of {container}:\n{log}\nstatus: {}",
            serde_json::to_string(&done.status).unwrap_or_default()
        );
        for want in expected {
            assert!(
                log.contains(want),
                "log of {name}/{container} lacks {want:?}:\n{log}"
            );
        }
    }
}

pub fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// The pod condition's status (true for "True"), None when absent.
pub fn condition(p: &Pod, type_: &str) -> Option<bool> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

/// The container's status, if reported yet.
pub fn container_status<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn init_status<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn restart_count(p: &Pod, container: &str) -> i32 {
    container_status(p, container)
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

/// Build a typed object from JSON (manifests read better as `json!`).
pub fn obj<K: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("test manifest does not decode: {e}"))
}

/// JSON merge: objects merge key by key, anything else replaces.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// `base` with `extra` merged in.
pub fn with(mut base: Value, extra: Value) -> Value {
    merge(&mut base, extra);
    base
}

/// The `metav1.Status` of a failed kube-rs call.
pub fn status_of<T: std::fmt::Debug>(r: kube::Result<T>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error (a Status), got {other:?}"),
    }
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

/// A small pseudo-random generator (no extra dependency).
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    pub fn new() -> Self {
        Rng(std::collections::hash_map::RandomState::new().hash_one(0u8) | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Set one key of a ConfigMap's data.
pub fn set_data(cm: &mut k8s_openapi::api::core::v1::ConfigMap, k: &str, v: &str) {
    cm.data
        .get_or_insert_with(std::collections::BTreeMap::new)
        .insert(k.into(), v.into());
}

/// The next event must be ADDED and equal `want`.
pub async fn expect_added(
    w: &mut Watcher<k8s_openapi::api::core::v1::ConfigMap>,
    want: &k8s_openapi::api::core::v1::ConfigMap,
) {
    match w.next(Duration::from_secs(15)).await {
        WatchEvent::Added(got) => assert_eq!(
            &got, want,
            "ADDED object differs from what the write returned"
        ),
        other => panic!(
            "expected ADDED {}, got {}",
            kube::ResourceExt::name_any(want),
            describe(&other)
        ),
    }
}

/// A resourceVersion as a number (etcd's revisions; opaque on other storage).
pub fn rv<K: kube::Resource>(o: &K) -> u64 {
    kube::ResourceExt::resource_version(o)
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

/// The fixed event time the upstream Events tests use.
pub fn event_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::from_second(1_505_828_956).unwrap(),
    )
}

/// An events.k8s.io Event as the upstream Events tests make it.
pub fn new_test_event(ns: &str, name: &str, label: &str) -> k8s_openapi::api::events::v1::Event {
    k8s_openapi::api::events::v1::Event {
        metadata: obj(json!({"name": name, "labels": {label: "true"}})),
        regarding: Some(obj(json!({"namespace": ns}))),
        event_time: Some(event_time()),
        note: Some(format!("This is {name}")),
        action: Some("Do".into()),
        reason: Some("Test".into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("test-controller".into()),
        reporting_instance: Some("test-node".into()),
        ..Default::default()
    }
}

/// Poll `f` every half second until it returns `Ok`; panics after `within` with `what` and
/// the last `Err` (the state seen), as the Go framework's `wait.PollUntilContextTimeout`.
pub async fn poll<T, Fut>(what: &str, within: Duration, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The group/version must be served and list `resource` (the discovery checks the
/// network API tests start with).
pub async fn expect_discovery(client: &Client, group: &str, version: &str, resource: &str) {
    let groups = client
        .list_api_groups()
        .await
        .unwrap_or_else(|e| panic!("GET /apis: {e}"));
    let g = groups
        .groups
        .iter()
        .find(|g| g.name == group)
        .unwrap_or_else(|| panic!("group {group} is not in /apis"));
    let gv = format!("{group}/{version}");
    assert!(
        g.versions.iter().any(|v| v.group_version == gv),
        "{gv} is not in the {group} discovery document"
    );
    let resources = client
        .list_api_group_resources(&gv)
        .await
        .unwrap_or_else(|e| panic!("GET /apis/{gv}: {e}"));
    assert!(
        resources.resources.iter().any(|r| r.name == resource),
        "{resource} is not in /apis/{gv}"
    );
}

/// The pod's IP (it must have one).
pub fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| panic!("pod {:?} has no IP", p.metadata.name))
}

/// The InternalIP of every node, by node name.
pub async fn node_internal_ips(client: &Client) -> Vec<(String, String)> {
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("listing nodes: {e}"));
    nodes
        .items
        .iter()
        .filter_map(|n| {
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .clone();
            Some((n.metadata.name.clone()?, ip))
        })
        .collect()
}

impl Ctx {
    /// A container serving its pod's hostname over HTTP on `port` (agnhost's `serve-hostname`
    /// with busybox `httpd`); SIGTERM ends it at once.
    pub fn hostname_server(&self, name: &str, port: u16) -> Value {
        let script = format!(
            "mkdir -p /www && hostname > /www/index.html && httpd -p {port} -h /www && \
             trap 'exit 0' TERM; while true; do sleep 1; done"
        );
        with(
            self.sh(name, &script),
            json!({"ports": [{"containerPort": port, "protocol": "TCP"}]}),
        )
    }

    /// Run `pod` to its end and return whether it succeeded and its container's log.
    pub async fn run_to_end(&self, pod: Pod, container: &str) -> (bool, String) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.create_pod(&pod).await;
        let done = self.wait_finished(&name).await;
        (
            phase(&done) == "Succeeded",
            self.logs(&name, container).await,
        )
    }

    /// Run `script` in a one-shot pod (spec `extra` merged in) that must succeed; its log.
    pub async fn script_output(&self, name: &str, script: &str, extra: Value) -> String {
        let pod = self.pod(
            name,
            with(json!({"containers": [self.sh("c", script)]}), extra),
        );
        let (ok, log) = self.run_to_end(pod, "c").await;
        assert!(ok, "pod {name} failed; its log:\n{log}");
        log
    }
}

/// A shell script that fetches each URL with busybox `wget` (3 s each, retried for up to
/// `secs` seconds) and prints `OK <url> <body>` or `FAIL <url> <error>`; it exits 1 when
/// one failed (upstream's `CheckServiceReachability` from an exec pod).
pub fn wget_script(urls: &[String], secs: u32) -> String {
    let list = urls.join(" ");
    format!(
        "rc=0; for u in {list}; do ok=; \
         for i in $(seq {secs}); do if out=$(timeout 3 wget -qO- \"$u\" 2>&1); then ok=1; break; fi; sleep 1; done; \
         if [ -n \"$ok\" ]; then echo \"OK $u $out\"; else echo \"FAIL $u $out\"; rc=1; fi; done; exit $rc"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_valid_labels() {
        let n = namespace_name("[sig-node] Pods should be updated [NodeConformance] [Conformance]");
        assert!(n.starts_with("pods-should-be-updated-"), "{n}");
        let long = namespace_name(&format!(
            "[sig-x] {} [Conformance]",
            "Very Long ".repeat(20)
        ));
        assert!(long.len() <= 63, "{long}");
        for n in [n, long] {
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(!n.starts_with('-') && !n.contains("--"), "{n}");
        }
        assert_ne!(namespace_name("[a] b"), namespace_name("[a] b"));
    }

    #[test]
    fn merge_is_deep() {
        let v = with(
            json!({"a": {"b": 1, "c": [1]}, "d": 1}),
            json!({"a": {"c": [2], "e": 3}}),
        );
        assert_eq!(v, json!({"a": {"b": 1, "c": [2], "e": 3}, "d": 1}));
    }
}
