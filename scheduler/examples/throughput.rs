//! Scheduling throughput against a real etcd and apiserver, the scheduler in process.
//!
//! ```sh
//! cargo build --release -p keelson-apiserver
//! cargo run --release -p keelson-scheduler --example throughput -- 5000 10000
//! ```
//!
//! Creates N ready nodes through the API, then: (0) the apiserver's raw binding rate:
//! M/5 pods for no scheduler bound directly, 128 bindings in flight; then two phases of
//! M pods each (10m CPU, 16Mi): (1) pods created before the scheduler starts, so the
//! rate is the scheduler's and the binding writes' alone, with this process's CPU time
//! (the scheduler and its client; etcd and the apiserver are other processes); (2) pods
//! created at concurrency 64 while the scheduler runs, measured from the first create
//! to the last binding.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keelson_client::{Api, Client, Patch, PatchParams, PostParams};
use keelson_scheduler::{Scheduler, SchedulerConfig};
use keelson_testkit::Cluster;
use prometheus_client::registry::Registry;
use serde_json::json;

/// CPU seconds (user + system) of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

async fn parallel<F, Fut>(n: usize, concurrency: usize, f: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                f(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn scheduled(registry: &Registry) -> usize {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out.lines()
        .find(|l| l.starts_with("scheduler_schedule_attempts_total{result=\"scheduled\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn create_pods(pods: &Api<Pod>, prefix: &str, n: usize) {
    create_pods_for(pods, prefix, n, "default-scheduler").await
}

async fn create_pods_for(pods: &Api<Pod>, prefix: &str, n: usize, scheduler: &str) {
    let pods = pods.clone();
    let (prefix, scheduler) = (prefix.to_string(), scheduler.to_string());
    parallel(n, 64, move |i| {
        let (pods, name, scheduler) = (pods.clone(), format!("{prefix}-{i:05}"), scheduler.clone());
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {"schedulerName": scheduler, "containers": [{"name": "app", "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
    })
    .await;
}

/// Wait until the scheduler has bound `total` pods; returns when the first and the
/// last of the pods after `before` were bound.
async fn wait_bound(registry: &Registry, before: usize, total: usize) -> (Instant, Instant) {
    let mut first = None;
    loop {
        let n = scheduled(registry);
        if n > before && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= total {
            return (first.unwrap_or_else(Instant::now), Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (nodes_n, pods_n) = (
        args.first().copied().unwrap_or(5000),
        args.get(1).copied().unwrap_or(10_000),
    );
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap();
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();

    let t = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    parallel(nodes_n, 64, move |i| {
        let nodes = nodes.clone();
        async move {
            let name = format!("node-{i:05}");
            let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}}}))
            .unwrap();
            nodes.create(&PostParams::default(), &node).await.unwrap();
            let r = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
            let status = json!({"status": {"capacity": r, "allocatable": r,
                "conditions": [{"type": "Ready", "status": "True"}]}});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .unwrap();
        }
    })
    .await;
    println!("{nodes_n} nodes in {:.1}s", t.elapsed().as_secs_f64());

    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");

    // Phase 0: the apiserver's binding rate, without a scheduler.
    let raw = pods_n / 5;
    create_pods_for(&pods, "raw", raw, "none").await;
    let t = Instant::now();
    let api = pods.clone();
    parallel(raw, 128, move |i| {
        let api = api.clone();
        async move {
            let name = format!("raw-{i:05}");
            let binding: k8s_openapi::api::core::v1::Binding = serde_json::from_value(json!({
                "metadata": {"name": name}, "target": {"kind": "Node", "name": format!("node-{:05}", i % nodes_n)}}))
            .unwrap();
            let _: serde_json::Value = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await
                .unwrap();
        }
    })
    .await;
    println!(
        "phase 0: {raw} bindings written directly in {:.2}s: {:.0} bindings/s",
        t.elapsed().as_secs_f64(),
        raw as f64 / t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    create_pods(&pods, "pre", pods_n).await;
    println!("{pods_n} pods created in {:.1}s", t.elapsed().as_secs_f64());

    // Phase 1: the scheduler alone.
    let mut registry = Registry::default();
    let scheduler = Scheduler::new(client.clone(), SchedulerConfig::default(), &mut registry);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let task = tokio::spawn(scheduler.run());
    let (first, last) = wait_bound(&registry, 0, pods_n).await;
    let cpu = cpu_seconds() - cpu0;
    println!(
        "phase 1 (pre-created): {pods_n} pods bound {:.2}s after start ({:.2}s from the first binding): {:.0} pods/s; this process's CPU {cpu:.2}s = {:.0} µs/pod",
        last.duration_since(started).as_secs_f64(),
        last.duration_since(first).as_secs_f64(),
        pods_n as f64 / last.duration_since(first).as_secs_f64(),
        cpu * 1e6 / pods_n as f64,
    );

    // Phase 2: pods created while the scheduler runs.
    let t = Instant::now();
    let cpu0 = cpu_seconds();
    create_pods(&pods, "live", pods_n).await;
    let created = t.elapsed();
    let (_, last) = wait_bound(&registry, pods_n, 2 * pods_n).await;
    println!(
        "phase 2 (created at concurrency 64 meanwhile): created in {:.2}s, all bound {:.2}s after the first create: {:.0} pods/s; this process's CPU (scheduler and creators) {:.2}s",
        created.as_secs_f64(),
        last.duration_since(t).as_secs_f64(),
        pods_n as f64 / last.duration_since(t).as_secs_f64(),
        cpu_seconds() - cpu0,
    );
    task.abort();
}
