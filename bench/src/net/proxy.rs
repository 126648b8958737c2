//! keelson-proxy: programming the table for 1,000 Services (full, and one endpoint
//! changed) beside `nft -f FILE` of the same ruleset, and the real proxy's RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_proxy::{model, nft, rules};
use keelson_testkit::node::TestNetwork;
use keelson_testkit::{free_port, ApiserverOptions, Cluster};
use serde_json::{json, Value};

use super::{median, netns_path, nsenter, reexec_in, run, secs, vm_hwm_mib, Netns, Owned};
use crate::client::Https;
use crate::{ms, rss_mib};
#[derive(clap::Args, Clone, Debug)]
pub struct ProxyArgs {
    /// Services, each with one TCP port.
    #[arg(long, default_value_t = 1_000)]
    pub services: usize,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Rounds of (full program, one-endpoint sync, `nft -f FILE`); medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

impl ProxyArgs {
    fn to_args(&self) -> Vec<String> {
        vec![
            format!("--services={}", self.services),
            format!("--endpoints={}", self.endpoints),
            format!("--rounds={}", self.rounds),
        ]
    }
}

const PROXY_NS: &str = "bench-net";
const POD_RANGE: &str = "10.64.0.0/16";

fn service_json(i: usize, cluster_ip: Option<String>) -> Value {
    let mut spec =
        json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": format!("svc-{i:04}"), "namespace": PROXY_NS},
        "spec": spec,
    })
}

/// Endpoint `e` of Service `i`: a distinct address in 10.64.0.0/16 (`shift` moves it,
/// for the one-endpoint change).
fn endpoint_ip(i: usize, e: usize, per: usize, shift: usize) -> String {
    let k = i * per + e + shift;
    format!("10.64.{}.{}", k / 250, k % 250 + 1)
}

fn slice_json(i: usize, per: usize, changed: Option<usize>) -> Value {
    let endpoints: Vec<Value> = (0..per)
        .map(|e| {
            // A changed endpoint moves past every other address in use.
            let shift = if changed == Some(e) { 50_000 } else { 0 };
            json!({
                "addresses": [endpoint_ip(i, e, per, shift)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "bench-node",
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("svc-{i:04}-1"),
            "namespace": PROXY_NS,
            "labels": {keelson_client::well_known::SERVICE_NAME_LABEL: format!("svc-{i:04}")},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// How many Service ports of the benchmark's namespace the proxy's table sends somewhere.
fn programmed_services(list_map: &str) -> usize {
    list_map.matches(&format!("svc-{PROXY_NS}/")).count()
}

/// `keelson-bench proxy`: the rules part in a namespace of its own, then the real
/// proxy's RSS against a real apiserver.
pub async fn run_proxy(a: ProxyArgs) -> anyhow::Result<()> {
    println!(
        "keelson-bench proxy: {} Services x {} endpoints, {} rounds",
        a.services, a.endpoints, a.rounds
    );
    let figures = {
        let ns = Netns::create("px")?;
        let mut args = vec!["proxy-rules".to_string()];
        args.extend(a.to_args());
        reexec_in(&netns_path(&ns.name), &args)?
    };
    let rss = proxy_rss(&a).await?;

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| table size: chains / rules; full transaction | {} / {}; {:.1} MiB |",
        figures["chains"],
        figures["rules"],
        figures["full_bytes"].as_f64().unwrap_or_default() / (1 << 20) as f64
    );
    println!(
        "| model + render alone (`service_ports` + `rules::render`) | {} + {} |",
        ms(secs(&figures["model"])),
        ms(secs(&figures["render"]))
    );
    println!(
        "| `Ruleset::full()` text | {} |",
        ms(secs(&figures["full_text"]))
    );
    let first = secs(&figures["first_apply"]);
    let file = secs(&figures["nft_file"]);
    println!(
        "| first full program (`full()` + `nft::apply`) median | {} |",
        ms(first)
    );
    println!(
        "| baseline: `nft -f FILE` of the same ruleset median | {} |",
        ms(file)
    );
    println!(
        "| ratio full program / `nft -f FILE` | {:.2} |",
        first.as_secs_f64() / file.as_secs_f64()
    );
    println!(
        "| one endpoint changed: sync (model + render + diff + apply) median; apply alone; diff | {}; {}; {} bytes |",
        ms(secs(&figures["sync"])),
        ms(secs(&figures["diff_apply"])),
        figures["diff_bytes"]
    );
    println!(
        "| ratio one-endpoint sync / full `nft -f FILE` | {:.3} |",
        secs(&figures["sync"]).as_secs_f64() / file.as_secs_f64()
    );
    println!(
        "| real keelson-proxy: last of 2 x {} creates acknowledged → all in its table | {} |",
        a.services,
        ms(rss.after_burst)
    );
    println!(
        "| real keelson-proxy: fresh start with {} Services there → all in its table | {} |",
        a.services,
        ms(rss.programmed)
    );
    println!(
        "| keelson-proxy RSS idle (empty cluster) | {:.1} MiB |",
        rss.idle
    );
    println!(
        "| keelson-proxy RSS at {} Services (target < 20 MB): after the burst, peak; fresh start, peak | {:.1}, {:.1}; {:.1}, {:.1} MiB |",
        a.services, rss.rss, rss.hwm, rss.fresh_rss, rss.fresh_hwm
    );
    Ok(())
}

/// The hidden `proxy-rules` subcommand, run inside a scratch namespace: prints one
/// JSON line of figures.
pub async fn proxy_rules(a: ProxyArgs) -> anyhow::Result<()> {
    let services: Vec<Arc<Service>> = (0..a.services)
        .map(|i| {
            let ip = format!("10.96.{}.{}", 1 + i / 250, i % 250 + 1);
            serde_json::from_value(service_json(i, Some(ip))).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let slices = |changed: Option<usize>| -> anyhow::Result<Vec<Arc<EndpointSlice>>> {
        (0..a.services)
            .map(|i| {
                let c = changed
                    .filter(|c| c / a.endpoints == i)
                    .map(|c| c % a.endpoints);
                Ok(Arc::new(serde_json::from_value(slice_json(
                    i,
                    a.endpoints,
                    c,
                ))?))
            })
            .collect()
    };
    let original = slices(None)?;
    let node = rules::NodeContext {
        cluster_cidrs: vec![POD_RANGE.into()],
        nodeport_ips: Vec::new(),
    };

    let t = Instant::now();
    let ports = model::service_ports(&services, &original, "bench-node");
    let model_time = t.elapsed();
    let t = Instant::now();
    let ruleset = rules::render(&ports, &node);
    let render_time = t.elapsed();
    let t = Instant::now();
    let full_text = ruleset.full();
    let full_text_time = t.elapsed();
    let (chains, rule_count) = ruleset.size();
    let file = std::env::temp_dir().join(format!("kbench-rules-{}.nft", std::process::id()));
    std::fs::write(&file, &full_text)?;
    let result = proxy_rounds(&a, &services, &slices, &ruleset, &node, &file).await;
    let _ = std::fs::remove_file(&file);
    let rounds = result?;

    println!(
        "{}",
        json!({
            "chains": chains,
            "rules": rule_count,
            "full_bytes": full_text.len(),
            "model": model_time.as_secs_f64(),
            "render": render_time.as_secs_f64(),
            "full_text": full_text_time.as_secs_f64(),
            "first_apply": median(rounds.first).as_secs_f64(),
            "nft_file": median(rounds.file).as_secs_f64(),
            "sync": median(rounds.sync).as_secs_f64(),
            "diff_apply": median(rounds.diff_apply).as_secs_f64(),
            "diff_bytes": rounds.diff_bytes,
        })
    );
    Ok(())
}

#[derive(Default)]
struct ProxyRounds {
    first: Vec<Duration>,
    file: Vec<Duration>,
    sync: Vec<Duration>,
    diff_apply: Vec<Duration>,
    diff_bytes: usize,
}

/// Alternates the full program, a one-endpoint sync and the `nft -f FILE` baseline,
/// each full load into a namespace without the table.
async fn proxy_rounds(
    a: &ProxyArgs,
    services: &[Arc<Service>],
    slices: &dyn Fn(Option<usize>) -> anyhow::Result<Vec<Arc<EndpointSlice>>>,
    ruleset: &rules::Ruleset,
    node: &rules::NodeContext,
    file: &Path,
) -> anyhow::Result<ProxyRounds> {
    let list_map =
        || run(Command::new("nft").args(["list", "map", "ip", rules::TABLE, "service-ips"]));
    let mut out = ProxyRounds::default();
    for round in 0..a.rounds.max(1) {
        nft::delete_table("ip", rules::TABLE).await?;
        let t = Instant::now();
        nft::apply(&ruleset.full()).await?;
        out.first.push(t.elapsed());
        ensure!(
            programmed_services(&list_map()?) == a.services,
            "the full program did not put every Service in the table"
        );

        // One endpoint of one Service (a different one each round) moves.
        let service = (a.services / 2 + round * 7) % a.services;
        let which = service * a.endpoints + 3 % a.endpoints;
        // The informer's store hands the proxy ready objects: build them untimed.
        let changed = slices(Some(which))?;
        // What the proxy keeps of the table it applied (untimed: kept from the last sync).
        let applied = ruleset.applied();
        let t = Instant::now();
        let ports = model::service_ports(services, &changed, "bench-node");
        let next = rules::render(&ports, node);
        let tx = next
            .diff(&applied)
            .context("a changed endpoint gives a transaction")?;
        let t_apply = Instant::now();
        nft::apply(&tx).await?;
        out.diff_apply.push(t_apply.elapsed());
        out.sync.push(t.elapsed());
        out.diff_bytes = tx.len();
        let moved = endpoint_ip(
            which / a.endpoints,
            which % a.endpoints,
            a.endpoints,
            50_000,
        );
        let chain = format!(
            "ep-{PROXY_NS}/svc-{:04}/tcp/http__{moved}/8080",
            which / a.endpoints
        );
        run(Command::new("nft").args(["list", "chain", "ip", rules::TABLE, &chain]))
            .context("the one-endpoint sync did not add the moved endpoint's chain")?;

        // The baseline: the same full text from a file, into a namespace without it.
        nft::delete_table("ip", rules::TABLE).await?;
        let t = Instant::now();
        run(Command::new("nft").arg("-f").arg(file))?;
        out.file.push(t.elapsed());
        ensure!(
            programmed_services(&list_map()?) == a.services,
            "nft -f FILE did not put every Service in the table"
        );
    }
    Ok(out)
}

struct ProxyRss {
    idle: f64,
    /// From the last create acknowledged to the table holding every Service.
    after_burst: Duration,
    rss: f64,
    hwm: f64,
    /// From a fresh start (Services already there) to the table holding them all.
    programmed: Duration,
    fresh_rss: f64,
    fresh_hwm: f64,
}

/// The real `keelson-proxy` in a namespace on a test bridge, against a real apiserver
/// holding the Services and EndpointSlices; RSS once its table has them all.
async fn proxy_rss(a: &ProxyArgs) -> anyhow::Result<ProxyRss> {
    let network = TestNetwork::create()?;
    let gateway = network.gateway_ip();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start_with(
            1,
            ApiserverOptions {
                bind_address: Some("0.0.0.0".into()),
                extra_sans: vec![gateway.to_string()],
                ..Default::default()
            },
        )
    })
    .await??;
    let api = Https::connect(&cluster, 8).await?;
    api.ensure_namespace(PROXY_NS).await?;
    let host = network.add_outside_host()?;
    let ns_path = netns_path(&host.name);
    let kubeconfig = cluster.dir.path().join("proxy.kubeconfig");
    cluster.write_kubeconfig(
        &kubeconfig,
        &format!("https://{gateway}:{}", cluster.apiservers[0].port),
    )?;
    let start_proxy = || -> anyhow::Result<Owned> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cluster.dir.path().join("proxy.log"))?;
        let child = nsenter(&ns_path, keelson_testkit::binary("keelson-proxy")?)
            .args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--hostname-override=bench-node".into(),
                format!("--cluster-cidr={POD_RANGE}"),
                format!("--healthz-bind-address=127.0.0.1:{}", free_port()),
                format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting keelson-proxy")?;
        Ok(Owned(child))
    };
    let wait_programmed = |n: usize| {
        let (ns_path, cluster) = (&ns_path, &cluster);
        async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let listed = run(nsenter(ns_path, "nft").args([
                    "list",
                    "map",
                    "ip",
                    rules::TABLE,
                    "service-ips",
                ]));
                if listed.is_ok_and(|l| programmed_services(&l) >= n) {
                    return anyhow::Ok(());
                }
                if Instant::now() > deadline {
                    bail!(
                        "keelson-proxy did not program {n} Services within 180 s; log:\n{}",
                        cluster.log_tail("proxy.log")
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // An empty cluster first: the idle figure.
    let proxy = start_proxy()?;
    wait_programmed(0).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(proxy.pid());

    // The objects arrive while it runs (a burst of 2 x N creates).
    let t = Instant::now();
    create_all(&api, a).await?;
    let created = t.elapsed();
    println!(
        "created {} Services and EndpointSlices through the API in {}",
        a.services,
        ms(created)
    );
    let t = Instant::now();
    wait_programmed(a.services).await?;
    let after_burst = t.elapsed();
    // Let the allocator settle after the syncs before reading RSS.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, hwm) = (rss_mib(proxy.pid()), vm_hwm_mib(proxy.pid()));
    drop(proxy);

    // A fresh proxy finding them all (a restart with the table gone).
    run(nsenter(&ns_path, "nft").args(["delete", "table", "ip", rules::TABLE]))?;
    let started = Instant::now();
    let proxy = start_proxy()?;
    wait_programmed(a.services).await?;
    let programmed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = ProxyRss {
        idle,
        after_burst,
        rss,
        hwm,
        programmed,
        fresh_rss: rss_mib(proxy.pid()),
        fresh_hwm: vm_hwm_mib(proxy.pid()),
    };
    drop(proxy);
    drop(host);
    drop(api);
    drop(cluster);
    drop(network);
    Ok(out)
}

/// The Services (ClusterIPs from the apiserver) and their slices, 16 requests in flight.
async fn create_all(api: &Https, a: &ProxyArgs) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (api, next, a) = (api.clone(), next.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= a.services {
                    return anyhow::Ok(());
                }
                let posts = [
                    (
                        format!("/api/v1/namespaces/{PROXY_NS}/services"),
                        service_json(i, None),
                    ),
                    (
                        format!("/apis/discovery.k8s.io/v1/namespaces/{PROXY_NS}/endpointslices"),
                        slice_json(i, a.endpoints, None),
                    ),
                ];
                for (path, body) in posts {
                    let (status, text) = api
                        .request("POST", &path, serde_json::to_vec(&body)?)
                        .await?;
                    ensure!(
                        status == 201,
                        "POST {path} returned {status}: {}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
