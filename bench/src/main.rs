//! `keelson-bench`: measures the apiserver against raw etcd in one run on one machine and
//! prints the figures (never asserts on time; these machines are noisy, so throughput
//! is reported as a ratio against a baseline measured in the same run).
//!
//! `cargo build --release --workspace --bins && ./target/release/keelson-bench`

mod client;
mod crd;
mod fairness;
mod net;
mod node;
mod scheduler;

use clap::Parser;
use client::Https;
use keelson_testkit::Cluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Pods to create through the apiserver (and keys to put into etcd for the baseline).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Watchers in the fan-out test.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Changes delivered to every watcher in the fan-out test.
    #[arg(long, default_value_t = 1_000)]
    changes: usize,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The scheduler benchmark (5,000 hollow nodes, 10,000 pods) instead of the
    /// apiserver one.
    Scheduler(scheduler::SchedulerArgs),
    /// The node benchmark (one real node: pod start latency against the raw CRI path,
    /// the agent's RSS and CPU) instead of the apiserver one.
    Node(node::NodeArgs),
    /// keelson-proxy: programming 1,000 Services beside `nft -f FILE`, one-endpoint
    /// sync, the real proxy's RSS.
    Proxy(net::ProxyArgs),
    /// keelson-dns queries/s at concurrency 32 beside dnsmasq; its RSS.
    Dns(net::DnsArgs),
    /// Request latency through a ClusterIP beside straight to the pod IP (two nodes).
    ServiceLatency(net::LatencyArgs),
    /// Custom resources: creates/s beside ConfigMaps, CRD-to-first-create time, RSS
    /// with 100 CRDs.
    Crd(crd::CrdArgs),
    /// API Priority and Fairness: Lease renewals and admin gets under a flood of lists,
    /// APF on and off.
    Fairness(fairness::FairnessArgs),
    /// (internal) the rules part of `proxy`, run inside a scratch network namespace.
    #[command(hide = true)]
    ProxyRules(net::ProxyArgs),
    /// (internal) the client of `service-latency`, run inside a node's namespace.
    #[command(hide = true)]
    TcpLatency(net::TcpLatencyArgs),
}

fn pod_json(ns: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": "bench", "tier": "backend", "pod-template-hash": "7c5ddbdf54"},
            "annotations": {"kubernetes.io/psp": "restricted", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example/bench/app:1.2.3",
                "command": ["/app", "--port=8080", "--log-level=info"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "MODE", "value": "production"}, {"name": "REGION", "value": "eu-west"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        }
    }))
    .expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `a / b / c us`, for a row of CPU-per-operation figures.
fn cpu_row(figures: &[f64]) -> String {
    let parts: Vec<String> = figures.iter().map(|f| format!("{f:.0}")).collect();
    format!("{} us", parts.join(" / "))
}

/// CPU used per operation by a set of processes during one phase.
struct CpuShare {
    pids: Vec<u32>,
    start: Vec<f64>,
}

impl CpuShare {
    fn start(pids: &[u32]) -> CpuShare {
        CpuShare {
            pids: pids.to_vec(),
            start: pids.iter().map(|p| cpu_secs(*p)).collect(),
        }
    }

    /// Microseconds of CPU per operation, for each process in the order given.
    fn per_op(&self, ops: usize) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(p, s)| (cpu_secs(*p) - s) * 1e6 / ops as f64)
            .collect()
    }
}

async fn raw_etcd_puts(
    url: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let client = etcd_client::Client::connect([url.trim_start_matches("http://")], None).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut kv = client.kv_client();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let value = pod_json("raw", &format!("pod-{i:06}"));
                let t = Instant::now();
                kv.put(format!("/bench/raw/pod-{i:06}"), value, None)
                    .await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), lat))
}

async fn apiserver_creates(
    api: &Https,
    ns: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let (ns, prefix) = (ns.to_string(), prefix.to_string());
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let body = move |i: usize| pod_json(&ns, &format!("{prefix}-{i:06}"));
    creates(api, &path, body, n, concurrency).await
}

/// `n` POSTs of `body(i)` to `path` from `concurrency` tasks: creates per second and
/// each create's latency, in completion order per task.
pub(crate) async fn creates(
    api: &Https,
    path: &str,
    body: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, next, body, path) = (api.clone(), next.clone(), body.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let (status, text) = api.request("POST", &path, body(i)).await?;
                anyhow::ensure!(
                    status == 201,
                    "create returned {status}: {}",
                    String::from_utf8_lossy(&text)
                );
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), lat))
}

/// 1,000 watchers on pods in one namespace; create `changes` pods and measure, for every
/// watcher, the time from just before each create to that watcher receiving it.
async fn watch_fanout(
    api: &Https,
    watchers: usize,
    changes: usize,
) -> anyhow::Result<Vec<Duration>> {
    let ns = "fanout";
    api.ensure_namespace(ns).await?;
    let (_, body) = api
        .request(
            "GET",
            &format!("/api/v1/namespaces/{ns}/pods?limit=1"),
            Vec::new(),
        )
        .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; changes]));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let sent = sent.clone();
        let ready = ready.clone();
        let path = format!("/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}");
        tasks.push(tokio::spawn(async move {
            let mut stream = api.stream(&path).await?;
            ready.fetch_add(1, Ordering::Relaxed);
            let mut got = 0;
            let mut lat = Vec::with_capacity(changes);
            while got < changes {
                let Some(line) = stream.next_line().await? else {
                    break;
                };
                // Find "name":"fan-000123" without parsing the whole event.
                let Some(pos) = find(&line, b"\"name\":\"fan-") else {
                    continue;
                };
                let start = pos + 12;
                let idx: usize = std::str::from_utf8(&line[start..start + 6])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                let now = Instant::now();
                if let Some(Some(t)) = sent.lock().unwrap().get(idx).copied() {
                    lat.push(now.duration_since(t));
                }
                got += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    while ready.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..changes {
        sent.lock().unwrap()[i] = Some(Instant::now());
        let (status, text) = api
            .request(
                "POST",
                &format!("/api/v1/namespaces/{ns}/pods"),
                pod_json(ns, &format!("fan-{i:06}")),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "create returned {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let mut all = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(120), t).await {
            Ok(r) => all.extend(r??),
            Err(_) => anyhow::bail!("a watcher did not receive all {changes} changes within 120s"),
        }
    }
    Ok(all)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    match args.command {
        Some(Command::Scheduler(a)) => return scheduler::run(a).await,
        Some(Command::Node(a)) => return node::run(a).await,
        Some(Command::Proxy(a)) => return net::run_proxy(a).await,
        Some(Command::Dns(a)) => return net::run_dns(a).await,
        Some(Command::ServiceLatency(a)) => return net::run_service_latency(a).await,
        Some(Command::Fairness(a)) => return fairness::run(a).await,
        Some(Command::Crd(a)) => return crd::run(a).await,
        Some(Command::ProxyRules(a)) => return net::proxy_rules(a).await,
        Some(Command::TcpLatency(a)) => return net::tcp_latency(a),
        None => {}
    }
    println!(
        "keelson-bench: {} pods, concurrency {}, {} watchers x {} changes",
        args.pods, args.concurrency, args.watchers, args.changes
    );
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let pid = cluster.apiservers[0].proc_.pid();
    let api = Https::connect(&cluster, 8).await?;
    api.ensure_namespace("bench").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);

    let etcd_pid = cluster.etcd.proc_.pid();
    let processes = [etcd_pid, pid, std::process::id()];
    let cpu = CpuShare::start(&processes);
    let (etcd_rate, mut etcd_lat) =
        raw_etcd_puts(&cluster.etcd.url, args.pods, args.concurrency).await?;
    let etcd_cpu = cpu.per_op(args.pods);
    let cpu = CpuShare::start(&processes);
    let (api_rate, mut api_lat) =
        apiserver_creates(&api, "bench", "pod", args.pods, args.concurrency).await?;
    let api_cpu = cpu.per_op(args.pods);
    etcd_lat.sort();
    api_lat.sort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_mib(pid);

    let mut fan = watch_fanout(&api, args.watchers, args.changes).await?;
    fan.sort();
    let with_watchers = rss_mib(pid);

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| raw etcd puts/s (pod JSON, concurrency {}) | {etcd_rate:.0} |",
        args.concurrency
    );
    println!(
        "| raw etcd put latency p50 / p99 | {} / {} |",
        ms(percentile(&etcd_lat, 0.5)),
        ms(percentile(&etcd_lat, 0.99))
    );
    println!(
        "| apiserver pod creates/s over HTTPS (concurrency {}) | {api_rate:.0} |",
        args.concurrency
    );
    println!(
        "| create throughput ratio apiserver / raw etcd (target >= 0.5) | {:.2} |",
        api_rate / etcd_rate
    );
    println!(
        "| CPU per raw put: etcd / apiserver / load generator | {} |",
        cpu_row(&etcd_cpu)
    );
    println!(
        "| CPU per create: etcd / apiserver / load generator | {} |",
        cpu_row(&api_cpu)
    );
    println!(
        "| apiserver create latency p50 / p99 | {} / {} |",
        ms(percentile(&api_lat, 0.5)),
        ms(percentile(&api_lat, 0.99))
    );
    println!(
        "| watch fan-out: {} watchers x {} changes, delivery p50 / p99 | {} / {} ({} deliveries) |",
        args.watchers,
        args.changes,
        ms(percentile(&fan, 0.5)),
        ms(percentile(&fan, 0.99)),
        fan.len()
    );
    println!("| apiserver RSS idle (target < 30 MB) | {idle:.1} MiB |");
    println!(
        "| apiserver RSS with {} pods stored (target < 150 MB) | {loaded:.1} MiB |",
        args.pods
    );
    println!(
        "| apiserver RSS with {} watchers open | {with_watchers:.1} MiB |",
        args.watchers
    );
    drop(api);
    drop(cluster);
    Ok(())
}
