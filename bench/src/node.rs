//! The node benchmark (issue 9): one real node (its own network namespace, containerd
//! and `keelson-node-agent`) under the real control plane. Prints pod start latency
//! (create -> Running observed through a watch) for N pods created at once, beside
//! the raw CRI path measured on the same containerd in the same run (RunPodSandbox +
//! CreateContainer + StartContainer, no Keelson), the agent's RSS and CPU idle and with
//! the pods running, containerd's own, and how long deleting the pods takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use keelson_client::{
    Api, Client, DeleteParams, ListParams, ObjectView, PostParams, WatchEvent, WatchParams,
};
use keelson_testkit::node_cluster::{NodeCluster, NodeClusterOptions};
use serde_json::json;
use tonic::transport::Channel;

use crate::{cpu_secs, percentile, rss_mib};

/// Milliseconds below a second, seconds above: these figures span both.
fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Pods created at once (through the API, and sandboxes for the raw CRI baseline).
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Seconds the node is left alone before idle figures, and after the pods run.
    #[arg(long, default_value_t = 20)]
    pub settle: u64,
    /// Seconds over which CPU use is averaged.
    #[arg(long, default_value_t = 30)]
    pub cpu_window: u64,
    /// The pods' terminationGracePeriodSeconds: `sleep` as PID 1 ignores SIGTERM, so
    /// every deletion waits this long before the SIGKILL.
    #[arg(long, default_value_t = 2)]
    pub grace: i64,
}

const NAMESPACE: &str = "bench-node";

fn pod(name: &str, grace: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench-node"}},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{
                "name": "app",
                "image": keelson_containerd::BUSYBOX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }]
        }
    }))
    .expect("pod")
}

/// The processes a node is made of.
#[derive(Clone, Copy)]
struct NodeProcs {
    agent: u32,
    containerd: u32,
}

/// RSS of every containerd shim serving the containerd at `socket` (one per pod), in MiB,
/// and how many there are.
fn shims_rss(socket: &Path) -> (usize, f64) {
    let socket = socket.as_os_str().as_encoded_bytes();
    let mut count = 0;
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
        if is_shim
            && args
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == socket)
        {
            count += 1;
            total += rss_mib(pid);
        }
    }
    (count, total)
}

/// Average CPU use of each process over `window`, in percent of one core.
async fn cpu_percent(pids: &[u32], window: Duration) -> Vec<f64> {
    let start: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let secs = t.elapsed().as_secs_f64();
    pids.iter()
        .zip(start)
        .map(|(p, s)| (cpu_secs(*p) - s) / secs * 100.0)
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Per-pod figures of one raw CRI round.
struct RawRound {
    total: Vec<Duration>,
    sandbox: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    span: Duration,
    /// StopPodSandbox + RemovePodSandbox per pod (the cleanup, all at once).
    removal: Vec<Duration>,
    removal_span: Duration,
}

/// The raw CRI path: `n` pods at once on the node's containerd, each RunPodSandbox
/// (the CRI plugin runs the node's CNI config, the one the agent wrote) then
/// CreateContainer and StartContainer for the busybox image; then every sandbox is
/// stopped and removed again, also all at once.
async fn raw_round(
    channel: Channel,
    node: &str,
    work_dir: &Path,
    round: usize,
    n: usize,
) -> anyhow::Result<RawRound> {
    let made: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut rt = RuntimeServiceClient::new(channel.clone());
        let name = format!("raw-{round}-{i:03}");
        let log_dir = work_dir.join(&name);
        let cgroup_parent = format!("/keelson-{node}/bench-raw/pod{name}");
        let made = made.clone();
        tasks.push(tokio::spawn(async move {
            std::fs::create_dir_all(&log_dir)?;
            let namespaces = cri::NamespaceOption {
                network: cri::NamespaceMode::Pod as i32,
                pid: cri::NamespaceMode::Container as i32,
                ipc: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            };
            let sandbox_config = cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: name.clone(),
                    uid: format!("bench-raw-{name}"),
                    namespace: "bench-raw".into(),
                    attempt: 0,
                }),
                hostname: name.clone(),
                log_directory: log_dir.display().to_string(),
                labels: HashMap::from([("app".to_string(), "bench-raw".to_string())]),
                linux: Some(cri::LinuxPodSandboxConfig {
                    cgroup_parent,
                    security_context: Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(namespaces.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let container = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: keelson_containerd::BUSYBOX_IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "app/0.log".into(),
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        cpu_shares: 2,
                        oom_score_adj: 1000,
                        ..Default::default()
                    }),
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(namespaces),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            };
            let t0 = Instant::now();
            let id = rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            made.lock().unwrap().push(id.clone());
            let t1 = Instant::now();
            let cid = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: id,
                    config: Some(container),
                    sandbox_config: Some(sandbox_config),
                })
                .await?
                .into_inner()
                .container_id;
            let t2 = Instant::now();
            rt.start_container(cri::StartContainerRequest { container_id: cid })
                .await?;
            let t3 = Instant::now();
            anyhow::Ok((t3 - t0, t1 - t0, t2 - t1, t3 - t2, t3))
        }));
    }
    let mut round_result = RawRound {
        total: Vec::new(),
        sandbox: Vec::new(),
        create: Vec::new(),
        start: Vec::new(),
        span: Duration::ZERO,
        removal: Vec::new(),
        removal_span: Duration::ZERO,
    };
    let mut last = started;
    let mut failure = None;
    for t in tasks {
        match t.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((total, sandbox, create, start, end)) => {
                round_result.total.push(total);
                round_result.sandbox.push(sandbox);
                round_result.create.push(create);
                round_result.start.push(start);
                last = last.max(end);
            }
            Err(e) => failure = Some(e),
        }
    }
    round_result.span = last - started;
    // Cleanup runs whether or not every pod started.
    let ids = std::mem::take(&mut *made.lock().unwrap());
    let removal_started = Instant::now();
    let removals: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let mut rt = RuntimeServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
                rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await?;
                anyhow::Ok(t.elapsed())
            })
        })
        .collect();
    for r in removals {
        match r.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(d) => round_result.removal.push(d),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    round_result.removal_span = removal_started.elapsed();
    let _ = std::fs::remove_dir_all(work_dir);
    remove_cgroups(&format!("/keelson-{node}/bench-raw"));
    if let Some(e) = failure {
        return Err(e.context("the raw CRI round"));
    }
    for v in [
        &mut round_result.total,
        &mut round_result.sandbox,
        &mut round_result.create,
        &mut round_result.start,
        &mut round_result.removal,
    ] {
        v.sort();
    }
    Ok(round_result)
}

/// Remove the (empty) cgroups runc leaves behind under `parent` in every v1 hierarchy.
fn remove_cgroups(parent: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(parent.trim_start_matches('/'));
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// When each pod was created, bound and first seen Running, and deleted and gone.
#[derive(Default, Clone, Copy)]
struct Timeline {
    created: Option<Instant>,
    /// The same moments on the wall clock, to line up with containerd's timestamps.
    created_wall: Option<SystemTime>,
    bound: Option<Instant>,
    running: Option<Instant>,
    running_wall: Option<SystemTime>,
    delete_sent: Option<Instant>,
    gone: Option<Instant>,
}

type Timelines = Arc<Mutex<HashMap<String, Timeline>>>;

/// Follow the namespace's pods and fill in when each was bound, Running and gone.
fn follow(
    mut stream: futures::stream::BoxStream<'static, keelson_client::Result<WatchEvent<Pod>>>,
    timelines: Timelines,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let (p, deleted) = match ev {
                Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => (p, false),
                Ok(WatchEvent::Deleted(p)) => (p, true),
                Ok(WatchEvent::Bookmark(_)) => continue,
                Ok(WatchEvent::Error(e)) => {
                    eprintln!("pod watch ended: {e:?}");
                    return;
                }
                Err(e) => {
                    eprintln!("pod watch failed: {e}");
                    return;
                }
            };
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut all = timelines.lock().unwrap();
            let t = all.entry(name).or_default();
            if deleted {
                t.gone.get_or_insert(now);
                continue;
            }
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                t.bound.get_or_insert(now);
            }
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && t.running.is_none() {
                t.running = Some(now);
                t.running_wall = Some(SystemTime::now());
            }
        }
    })
}

/// Wait until `done` holds for `n` timelines, or `timeout` passes; returns how many did.
async fn wait_for(
    timelines: &Timelines,
    n: usize,
    timeout: Duration,
    done: impl Fn(&Timeline) -> bool,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let count = timelines
            .lock()
            .unwrap()
            .values()
            .filter(|t| done(t))
            .count();
        if count >= n || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where each pod's start went, from containerd's own timestamps (nanoseconds on the
/// same clock): the sandbox's `created_at` is taken when RunPodSandbox begins, a
/// container's `created_at` when CreateContainer has made it and `started_at` when
/// StartContainer has started its task.
struct Breakdown {
    /// Create sent -> RunPodSandbox begins (API, scheduler, watch to the agent, the
    /// agent's work before the sandbox).
    to_sandbox: Vec<Duration>,
    /// RunPodSandbox begins -> container created (the sandbox with its network, then
    /// the agent's volumes, env and API reads, then CreateContainer).
    sandbox_to_created: Vec<Duration>,
    /// Container created -> started (StartContainer, plus the agent's Created event).
    created_to_started: Vec<Duration>,
    /// Container started -> Running observed (the agent's Started event, status
    /// computation and write, the watch).
    started_to_running: Vec<Duration>,
}

async fn breakdown(
    channel: Channel,
    timelines: &HashMap<String, Timeline>,
) -> anyhow::Result<Breakdown> {
    let mut rt = RuntimeServiceClient::new(channel);
    let selector = HashMap::from([(
        "io.kubernetes.pod.namespace".to_string(),
        NAMESPACE.to_string(),
    )]);
    let sandboxes = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .items;
    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    let pod_of = |labels: &HashMap<String, String>| {
        labels
            .get("io.kubernetes.pod.name")
            .cloned()
            .unwrap_or_default()
    };
    let sandbox_at: HashMap<String, i64> = sandboxes
        .iter()
        .map(|s| (pod_of(&s.labels), s.created_at))
        .collect();
    let ns = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    let span = |from: i64, to: i64| Duration::from_nanos((to - from).max(0) as u64);
    let mut b = Breakdown {
        to_sandbox: Vec::new(),
        sandbox_to_created: Vec::new(),
        created_to_started: Vec::new(),
        started_to_running: Vec::new(),
    };
    for c in containers {
        let name = pod_of(&c.labels);
        let (Some(t), Some(sandbox)) = (timelines.get(&name), sandbox_at.get(&name)) else {
            continue;
        };
        let (Some(created), Some(running)) = (t.created_wall, t.running_wall) else {
            continue;
        };
        let Some(status) = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
        else {
            continue;
        };
        b.to_sandbox.push(span(ns(created), *sandbox));
        b.sandbox_to_created.push(span(*sandbox, status.created_at));
        b.created_to_started
            .push(span(status.created_at, status.started_at));
        b.started_to_running
            .push(span(status.started_at, ns(running)));
    }
    for v in [
        &mut b.to_sandbox,
        &mut b.sandbox_to_created,
        &mut b.created_to_started,
        &mut b.started_to_running,
    ] {
        v.sort();
    }
    Ok(b)
}

/// The agent's own counters and histogram sums, from its `/metrics` through the
/// apiserver's `nodes/proxy`.
fn agent_metrics(cluster: &NodeCluster, node: &str) -> HashMap<String, f64> {
    let out = tokio::task::block_in_place(|| {
        cluster.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{node}/proxy/metrics"),
        ])
    });
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// `p50 / p90 / p99 / max`.
fn quantiles(v: &[Duration]) -> String {
    format!(
        "{} / {} / {} / {}",
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.9)),
        ms(percentile(v, 0.99)),
        ms(v.last().copied().unwrap_or_default())
    )
}

/// Wait for what every pod of a fresh namespace needs before it can start (its
/// `default` ServiceAccount, which ServiceAccount admission names, and the
/// `kube-root-ca.crt` ConfigMap its token volume projects), so the first pods do not
/// measure the controllers.
async fn namespace_ready(client: &Client) -> anyhow::Result<()> {
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let t = Instant::now();
    while sa.get_opt("default").await?.is_none() || cm.get_opt("kube-root-ca.crt").await?.is_none()
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "namespace {NAMESPACE} has no default ServiceAccount or kube-root-ca.crt after 60s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    println!(
        "node benchmark: 1 real node, {} pods at once, settle {}s, CPU averaged over {}s, grace {}s",
        args.pods, args.settle, args.cpu_window, args.grace
    );
    let t = Instant::now();
    let cluster = tokio::task::spawn_blocking(|| {
        NodeCluster::start_with(
            1,
            NodeClusterOptions {
                node_cidr_mask: 24,
                cluster_cidr: None,
            },
        )
    })
    .await??;
    let node = &cluster.nodes[0];
    let node_name = node.name().to_string();
    println!(
        "cluster with node {node_name} ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let procs = NodeProcs {
        agent: node
            .agent_pid()
            .ok_or_else(|| anyhow::anyhow!("the agent is not running"))?,
        containerd: node
            .host
            .containerd()
            .pid()
            .ok_or_else(|| anyhow::anyhow!("containerd is not running"))?,
    };
    // Both are started through nsenter, which execs them: the pid is the process itself.
    println!(
        "agent pid {} ({}), containerd pid {} ({})",
        procs.agent,
        comm(procs.agent),
        procs.containerd,
        comm(procs.containerd)
    );
    let socket = node.host.socket().to_path_buf();
    let client = Client::from_kubeconfig(&cluster.cluster.kubeconfig)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    namespace_ready(&client).await?;

    // Idle: no pods, after the settle period.
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let idle_rss = (rss_mib(procs.agent), rss_mib(procs.containerd));
    let idle_cpu = cpu_percent(
        &[procs.agent, procs.containerd],
        Duration::from_secs(args.cpu_window),
    )
    .await;

    // The raw CRI baseline on the same containerd (the agent keeps running: it only
    // looks at sandboxes labelled with its node name, and these have no such label).
    let channel = keelson_containerd::connect(&socket).await?;
    let raw_dir: PathBuf = node.host.dir().join("bench-raw");
    let raw = raw_round(channel.clone(), &node_name, &raw_dir, 0, args.pods).await?;
    println!(
        "raw CRI: {} pods running in {:.2}s, removed in {:.2}s",
        raw.total.len(),
        raw.span.as_secs_f64(),
        raw.removal_span.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Keelson: watch the namespace, create every pod at once.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version;
    let wp = WatchParams {
        view: ObjectView {
            omit_managed_fields: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let timelines: Timelines = Arc::default();
    let watch = follow(pods.watch(&wp, &rv).await?, timelines.clone());
    let before = agent_metrics(&cluster, &node_name);
    let cpu_before = (cpu_secs(procs.agent), cpu_secs(procs.containerd));
    let started = Instant::now();
    let creates: Vec<_> = (0..args.pods)
        .map(|i| {
            let (api, timelines) = (pods.clone(), timelines.clone());
            tokio::spawn(async move {
                let name = format!("pod-{i:03}");
                let p = pod(&name, args.grace);
                {
                    let mut all = timelines.lock().unwrap();
                    let t = all.entry(name).or_default();
                    t.created = Some(Instant::now());
                    t.created_wall = Some(SystemTime::now());
                }
                api.create(&PostParams::default(), &p).await?;
                anyhow::Ok(())
            })
        })
        .collect();
    for c in creates {
        c.await??;
    }
    let running = wait_for(&timelines, args.pods, Duration::from_secs(600), |t| {
        t.running.is_some()
    })
    .await;
    let start_cpu = (
        cpu_secs(procs.agent) - cpu_before.0,
        cpu_secs(procs.containerd) - cpu_before.1,
    );
    let after = agent_metrics(&cluster, &node_name);
    let all = timelines.lock().unwrap().clone();
    let steps = breakdown(channel.clone(), &all).await?;
    let snapshot: Vec<Timeline> = all.values().copied().collect();
    let last_running = snapshot.iter().filter_map(|t| t.running).max();
    let to_running = sorted(
        snapshot
            .iter()
            .filter_map(|t| Some(t.running? - t.created?))
            .collect(),
    );
    let to_bound = sorted(
        snapshot
            .iter()
            .filter_map(|t| Some(t.bound? - t.created?))
            .collect(),
    );
    let bound_to_running = sorted(
        snapshot
            .iter()
            .filter_map(|t| Some(t.running? - t.bound?))
            .collect(),
    );
    let keelson_span = last_running.map(|l| l - started).unwrap_or_default();
    println!(
        "keelson: {running} of {} pods Running in {:.2}s",
        args.pods,
        keelson_span.as_secs_f64()
    );
    if running < args.pods {
        println!("{}", cluster.agent_logs());
    }

    // Loaded: the pods running, after the settle period.
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let loaded_rss = (rss_mib(procs.agent), rss_mib(procs.containerd));
    let shims = shims_rss(&socket);
    let quiet_before = agent_metrics(&cluster, &node_name);
    let loaded_cpu = cpu_percent(
        &[procs.agent, procs.containerd],
        Duration::from_secs(args.cpu_window),
    )
    .await;
    let quiet_after = agent_metrics(&cluster, &node_name);

    // Deletion: every pod at once, until the watch reports each gone.
    let delete_started = Instant::now();
    let deletes: Vec<_> = (0..args.pods)
        .map(|i| {
            let (api, timelines) = (pods.clone(), timelines.clone());
            tokio::spawn(async move {
                let name = format!("pod-{i:03}");
                timelines
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default()
                    .delete_sent = Some(Instant::now());
                api.delete(&name, &DeleteParams::default()).await?;
                anyhow::Ok(())
            })
        })
        .collect();
    for d in deletes {
        d.await??;
    }
    let gone = wait_for(&timelines, args.pods, Duration::from_secs(600), |t| {
        t.gone.is_some()
    })
    .await;
    let snapshot: Vec<Timeline> = timelines.lock().unwrap().values().copied().collect();
    let deletion = sorted(
        snapshot
            .iter()
            .filter_map(|t| Some(t.gone? - t.delete_sent?))
            .collect(),
    );
    let deletion_span = snapshot
        .iter()
        .filter_map(|t| t.gone)
        .max()
        .map(|l| l - delete_started)
        .unwrap_or_default();
    watch.abort();

    // A second raw round after the pods are gone, to show the baseline's spread.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let raw2 = raw_round(channel, &node_name, &raw_dir, 1, args.pods).await?;

    let n = args.pods as f64;
    let p99 = |v: &[Duration]| percentile(v, 0.99);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| raw CRI, {} pods at once: sandbox+create+start p50 / p90 / p99 / max | {} |",
        args.pods,
        quantiles(&raw.total)
    );
    println!(
        "| the same, second raw round after the Keelson pods are gone | {} |",
        quantiles(&raw2.total)
    );
    println!(
        "| raw CRI total time, first call to last container started (before / after) | {:.2} s / {:.2} s |",
        raw.span.as_secs_f64(),
        raw2.span.as_secs_f64()
    );
    println!(
        "| raw CRI p50 per step: RunPodSandbox / CreateContainer / StartContainer | {} / {} / {} |",
        ms(percentile(&raw.sandbox, 0.5)),
        ms(percentile(&raw.create, 0.5)),
        ms(percentile(&raw.start, 0.5))
    );
    println!(
        "| raw CRI p99 per step: RunPodSandbox / CreateContainer / StartContainer | {} / {} / {} |",
        ms(p99(&raw.sandbox)),
        ms(p99(&raw.create)),
        ms(p99(&raw.start))
    );
    println!(
        "| Keelson, {} pods at once: create -> Running observed p50 / p90 / p99 / max ({running} Running) | {} |",
        args.pods,
        quantiles(&to_running)
    );
    println!(
        "| Keelson total time, first create to last Running | {:.2} s |",
        keelson_span.as_secs_f64()
    );
    println!(
        "| of which create -> bound (scheduler) p50 / p99 | {} / {} |",
        ms(percentile(&to_bound, 0.5)),
        ms(p99(&to_bound))
    );
    println!(
        "| of which bound -> Running (agent + containerd) p50 / p99 | {} / {} |",
        ms(percentile(&bound_to_running, 0.5)),
        ms(p99(&bound_to_running))
    );
    for (what, v) in [
        ("create sent -> RunPodSandbox begins", &steps.to_sandbox),
        (
            "RunPodSandbox begins -> container created",
            &steps.sandbox_to_created,
        ),
        ("container created -> started", &steps.created_to_started),
        (
            "container started -> Running observed",
            &steps.started_to_running,
        ),
    ] {
        println!(
            "| Keelson per pod, {what} (containerd's timestamps), p50 / p99 | {} / {} |",
            ms(percentile(v, 0.5)),
            ms(p99(v))
        );
    }
    println!(
        "| p99 ratio Keelson / raw (first raw round; target <= 1.5) | {:.2} |",
        ratio(p99(&to_running), p99(&raw.total))
    );
    println!(
        "| p50 ratio Keelson / raw (first raw round) | {:.2} |",
        ratio(percentile(&to_running, 0.5), percentile(&raw.total, 0.5))
    );
    println!(
        "| agent during the start: CPU per pod, pod syncs, status writes, mean sync time | {:.1} ms / {:.0} / {:.0} / {} |",
        start_cpu.0 * 1000.0 / n,
        delta(&before, &after, "kubelet_pod_worker_duration_seconds_count"),
        delta(&before, &after, "keelson_node_agent_pod_status_writes_total"),
        ms(Duration::from_secs_f64(
            delta(&before, &after, "kubelet_pod_worker_duration_seconds_sum")
                / delta(&before, &after, "kubelet_pod_worker_duration_seconds_count").max(1.0)
        ))
    );
    println!(
        "| agent during the start: PLEG relists, mean relist time | {:.0} / {} |",
        delta(
            &before,
            &after,
            "kubelet_pleg_relist_duration_seconds_count"
        ),
        ms(Duration::from_secs_f64(
            delta(&before, &after, "kubelet_pleg_relist_duration_seconds_sum")
                / delta(
                    &before,
                    &after,
                    "kubelet_pleg_relist_duration_seconds_count"
                )
                .max(1.0)
        ))
    );
    println!(
        "| containerd CPU per pod during the Keelson start | {:.1} ms |",
        start_cpu.1 * 1000.0 / n
    );
    println!(
        "| agent RSS idle, no pods (target < 30 MB) | {:.1} MiB |",
        idle_rss.0
    );
    println!(
        "| agent RSS with {} pods running (target < 60 MB) | {:.1} MiB |",
        args.pods, loaded_rss.0
    );
    println!(
        "| agent CPU idle / with {} pods (average over {} s) | {:.2} % / {:.2} % of a core |",
        args.pods, args.cpu_window, idle_cpu[0], loaded_cpu[0]
    );
    let per_window = |key: &str| delta(&quiet_before, &quiet_after, key);
    println!(
        "| agent with {} pods running, over {} s: PLEG relists, mean relist time, pod syncs, status writes | {:.0} / {} / {:.0} / {:.0} |",
        args.pods,
        args.cpu_window,
        per_window("kubelet_pleg_relist_duration_seconds_count"),
        ms(Duration::from_secs_f64(
            per_window("kubelet_pleg_relist_duration_seconds_sum")
                / per_window("kubelet_pleg_relist_duration_seconds_count").max(1.0)
        )),
        per_window("kubelet_pod_worker_duration_seconds_count"),
        per_window("keelson_node_agent_pod_status_writes_total"),
    );
    println!(
        "| containerd RSS idle / with {} pods | {:.1} / {:.1} MiB |",
        args.pods, idle_rss.1, loaded_rss.1
    );
    println!(
        "| containerd CPU idle / with {} pods | {:.2} % / {:.2} % of a core |",
        args.pods, idle_cpu[1], loaded_cpu[1]
    );
    println!(
        "| containerd shims with {} pods: count, RSS together | {} / {:.1} MiB |",
        args.pods, shims.0, shims.1
    );
    println!(
        "| agent + containerd RSS idle (k3s agent with containerd: ~275 MB) | {:.1} MiB |",
        idle_rss.0 + idle_rss.1
    );
    println!(
        "| deletion ({}s grace): delete sent -> gone p50 / p90 / p99 / max ({gone} gone) | {} |",
        args.grace,
        quantiles(&deletion)
    );
    println!(
        "| deletion total time, first delete to last gone | {:.2} s |",
        deletion_span.as_secs_f64()
    );
    println!(
        "| raw CRI StopPodSandbox + RemovePodSandbox, all at once: p50 / p99, total | {} / {}, {:.2} s |",
        ms(percentile(&raw.removal, 0.5)),
        ms(p99(&raw.removal)),
        raw.removal_span.as_secs_f64()
    );
    drop(cluster);
    Ok(())
}
