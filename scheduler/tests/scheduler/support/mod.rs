//! A real etcd and apiserver, the scheduler running in the test process, and helpers
//! to make nodes (no kubelet: a Node object with allocatable and `Ready=True` is enough
//! for binding) and pods.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use keelson_client::{Api, Client, ListParams, Patch, PatchParams, PostParams};
use keelson_scheduler::{Scheduler, SchedulerConfig};
use keelson_testkit::Cluster;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

pub struct Env {
    pub cluster: Cluster,
    pub client: Client,
    pub registry: Registry,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(t) = self.scheduler.take() {
            t.abort();
        }
    }
}

/// A cluster without a scheduler.
pub async fn cluster() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .expect("cluster (cargo build -p keelson-apiserver first)");
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    Env {
        cluster,
        client,
        registry: Registry::default(),
        scheduler: None,
    }
}

/// A cluster with the scheduler running.
pub async fn start() -> Env {
    let mut env = cluster().await;
    env.start_scheduler(SchedulerConfig::default());
    env
}

impl Env {
    pub fn start_scheduler(&mut self, config: SchedulerConfig) {
        let s = Scheduler::new(self.client.clone(), config, &mut self.registry);
        self.scheduler = Some(tokio::spawn(s.run()));
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// A ready node with `cpu` cores, 8Gi and 110 pods; `extra` is merged into the Node
    /// (labels, taints).
    pub async fn add_node(&self, name: &str, cpu: &str, extra: Value) {
        let mut node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        });
        merge(&mut node, &extra);
        let node: Node = serde_json::from_value(node).unwrap();
        self.nodes()
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
        let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        }});
        self.nodes()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }

    /// A pod requesting `cpu` (if not empty); `extra` is merged into it.
    pub async fn add_pod(&self, name: &str, cpu: &str, extra: Value) -> Pod {
        let mut container = json!({"name": "app", "image": "registry.k8s.io/pause:3.10"});
        if !cpu.is_empty() {
            container["resources"] = json!({"requests": {"cpu": cpu}});
        }
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [container]},
        });
        merge(&mut pod, &extra);
        self.pods()
            .create(
                &PostParams::default(),
                &serde_json::from_value(pod).unwrap(),
            )
            .await
            .unwrap()
    }

    pub async fn pod(&self, name: &str) -> Pod {
        self.pods().get(name).await.unwrap()
    }

    /// The node the pod is bound to, once it is.
    pub async fn bound(&self, name: &str) -> String {
        eventually(&format!("{name} bound"), || async {
            node_of(&self.pods().get(name).await.ok()?)
        })
        .await
    }

    /// The pod's PodScheduled=False condition message, once it has one.
    pub async fn unschedulable(&self, name: &str) -> String {
        eventually(&format!("{name} unschedulable"), || async {
            let p = self.pods().get(name).await.ok()?;
            let c = condition(&p, "PodScheduled")?;
            (c.0 == "False" && c.1 == "Unschedulable").then_some(c.2)
        })
        .await
    }

    /// FailedScheduling events about the pod.
    pub async fn failed_scheduling_events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some("FailedScheduling")
            })
            .collect()
    }

    /// The scheduler's metrics in the text format.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }
}

pub fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

/// (status, reason, message) of a pod condition.
pub fn condition(p: &Pod, kind: &str) -> Option<(String, String, String)> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// JSON merge of `extra` into `v` (objects merged key by key).
pub fn merge(v: &mut Value, extra: &Value) {
    match (v, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), x);
            }
        }
        (v, x) => *v = x.clone(),
    }
}

/// Poll `f` every 100 ms until it returns Some; panic after 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
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
