//! The scheduler benchmark (issue: SchedulingBasic 5000Nodes_10000Pods, as Kubernetes'
//! scheduler_perf runs it): N hollow nodes, some pods already placed, then M pods
//! created; prints pods scheduled per second from creation to the binding being
//! observed, scheduling latency, the apiserver's raw binding rate in the same run, and
//! the scheduler's and controller-manager's RSS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, Client, ListParams, ObjectView, PostParams, WatchEvent, WatchParams};
use keelson_testkit::Cluster;
use serde_json::json;

use crate::{cpu_row, ms, percentile, rss_mib, CpuShare};

#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: usize,
    /// Pods bound before the scheduler starts (by this benchmark, measuring the raw
    /// binding write rate).
    #[arg(long, default_value_t = 1_000)]
    pub placed: usize,
    /// Pods created for the scheduler to place.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent writers for creates and bindings.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

fn pod(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "sched", "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{
                "name": "app", "image": "registry.example/bench/app:1.2.3",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
            }]
        }
    }))
    .expect("pod")
}

/// Run `n` async jobs with `concurrency` workers; returns the elapsed time.
async fn parallel<F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    println!(
        "scheduler benchmark: {} hollow nodes, {} pods placed, {} pods to schedule, concurrency {}",
        args.nodes, args.placed, args.pods, args.concurrency
    );
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let client = Client::from_kubeconfig(&cluster.kubeconfig)?;
    let hollow = cluster.start_component(
        "keelson",
        "hollow-nodes",
        &[
            "hollow-nodes".into(),
            format!("--count={}", args.nodes),
            "--zones=10".into(),
        ],
    )?;
    let nodes: Api<Node> = Api::all(client.clone());
    let t = Instant::now();
    loop {
        let n = nodes.list(&ListParams::default()).await?.items.len();
        if n >= args.nodes {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "only {n} nodes registered"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{} nodes registered in {:.1}s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "sched"}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sched");

    // Placed pods: created for no scheduler, then bound here. The binding phase is the
    // apiserver's raw binding write rate.
    let api = pods.clone();
    parallel(args.placed, args.concurrency, move |i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &pod(&format!("placed-{i:05}"), "none"),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let (api, node_count) = (pods.clone(), args.nodes);
    let bind_time = parallel(args.placed, args.concurrency, move |i| {
        let api = api.clone();
        async move {
            let name = format!("placed-{i:05}");
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(format!("hollow-{}", i % node_count)),
                    ..Default::default()
                },
            };
            let _: serde_json::Value = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await?;
            Ok(())
        }
    })
    .await?;
    let binding_rate = args.placed as f64 / bind_time.as_secs_f64();

    let scheduler =
        cluster.start_component("keelson-scheduler", "scheduler", &["--port=0".into()])?;
    let manager = cluster.start_component(
        "keelson-controller-manager",
        "controller-manager",
        &["--port=0".into(), "--cluster-cidr=10.128.0.0/9".into()],
    )?;
    // Settle: informers synced, node CIDRs assigned, leases renewed.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let idle = (rss_mib(scheduler.pid()), rss_mib(manager.pid()));

    // Watch for bindings from now on.
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version;
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // Like an informer, the benchmark's watch does not need managedFields.
    let wp = WatchParams {
        view: ObjectView {
            omit_managed_fields: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut stream = pods.watch(&wp, &rv).await?;
    let (seen_created, target) = (created_at.clone(), args.pods);
    let watcher = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(target);
        let mut last = Instant::now();
        while latencies.len() < target {
            let Some(ev) = stream.next().await else { break };
            if let Ok(WatchEvent::Modified(p)) = ev {
                let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                let name = p.metadata.name.unwrap_or_default();
                if bound && name.starts_with("pod-") {
                    if let Some(t0) = seen_created.lock().unwrap().remove(&name) {
                        last = Instant::now();
                        latencies.push(last - t0);
                    }
                }
            }
        }
        (latencies, last)
    });

    let processes = [
        cluster.etcd.proc_.pid(),
        cluster.apiservers[0].proc_.pid(),
        scheduler.pid(),
        manager.pid(),
        hollow.pid(),
        std::process::id(),
    ];
    let cpu = CpuShare::start(&processes);
    let started = Instant::now();
    let (api, seen) = (pods.clone(), created_at.clone());
    let create_time = parallel(args.pods, args.concurrency, move |i| {
        let (api, seen) = (api.clone(), seen.clone());
        async move {
            let name = format!("pod-{i:05}");
            seen.lock().unwrap().insert(name.clone(), Instant::now());
            api.create(&PostParams::default(), &pod(&name, "default-scheduler"))
                .await?;
            Ok(())
        }
    })
    .await?;
    let (mut latencies, last) = tokio::time::timeout(Duration::from_secs(600), watcher).await??;
    latencies.sort();
    let scheduled = latencies.len();
    let span = last - started;
    let cpu_per_pod = cpu.per_op(scheduled.max(1));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = (rss_mib(scheduler.pid()), rss_mib(manager.pid()));

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| apiserver raw binding writes/s ({} bindings, concurrency {}) | {binding_rate:.0} |",
        args.placed, args.concurrency
    );
    println!(
        "| pod creates/s while the scheduler runs | {:.0} |",
        args.pods as f64 / create_time.as_secs_f64()
    );
    println!(
        "| pods scheduled/s, first create to last binding observed ({scheduled} of {}) | {:.0} |",
        args.pods,
        scheduled as f64 / span.as_secs_f64()
    );
    println!(
        "| scheduling throughput / raw binding rate | {:.2} |",
        scheduled as f64 / span.as_secs_f64() / binding_rate
    );
    println!(
        "| scheduling latency (create sent -> binding observed) p50 / p99 | {} / {} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "| CPU per scheduled pod: etcd / apiserver / scheduler / controller-manager / hollow nodes / load generator | {} |",
        cpu_row(&cpu_per_pod)
    );
    println!("| scheduler RSS idle ({} nodes, {} pods) / loaded ({} nodes, {} pods) | {:.1} / {:.1} MiB |", args.nodes, args.placed, args.nodes, args.placed + args.pods, idle.0, loaded.0);
    println!(
        "| controller-manager RSS idle / loaded | {:.1} / {:.1} MiB |",
        idle.1, loaded.1
    );
    println!(
        "| hollow-nodes process RSS loaded | {:.1} MiB |",
        rss_mib(hollow.pid())
    );
    drop((scheduler, manager, hollow));
    Ok(())
}
