//! keelson-dns: queries per second over UDP for a Service name, beside dnsmasq
//! answering one hosts-file record under the same load generator; keelson-dns RSS.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use keelson_testkit::{free_port, Cluster};
use serde_json::{json, Value};

use super::Owned;
use crate::client::Https;
use crate::{ms, percentile, rss_mib};
#[derive(clap::Args, Clone, Debug)]
pub struct DnsArgs {
    /// Services in the cluster (the load asks for the first one's name).
    #[arg(long, default_value_t = 10)]
    pub services: usize,
    /// Queries in flight (one UDP socket each).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of load per server and round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds, alternating the servers; medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

const DNS_NS: &str = "bench-dns";

/// A standard DNS query (recursion desired) for the A record of `name`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `reply` answers query `id` with NOERROR and at least one record.
fn dns_answered(reply: &[u8], id: u16) -> Option<bool> {
    if reply.len() < 12 || u16::from_be_bytes([reply[0], reply[1]]) != id {
        return None;
    }
    let is_response = reply[2] & 0x80 != 0;
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    Some(is_response && rcode == 0 && answers > 0)
}

#[derive(Default)]
struct Load {
    answered: u64,
    failed: u64,
    lost: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Load {
    fn qps(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` workers, one query in flight each, for `duration`.
async fn udp_load(
    server: SocketAddr,
    name: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            let mut load = Load::default();
            let mut buf = [0u8; 1500];
            let mut id = (w as u16).wrapping_mul(2048);
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                let t = Instant::now();
                socket.send(&dns_query(id, &name)).await?;
                let wait_until = t + Duration::from_millis(500);
                let verdict = loop {
                    match tokio::time::timeout_at(wait_until.into(), socket.recv(&mut buf)).await {
                        Err(_) => break None,
                        Ok(r) => {
                            if let Some(ok) = dns_answered(&buf[..r?], id) {
                                break Some(ok);
                            }
                        }
                    }
                };
                match verdict {
                    Some(true) => {
                        load.answered += 1;
                        load.latencies.push(t.elapsed());
                    }
                    Some(false) => load.failed += 1,
                    None => load.lost += 1,
                }
            }
            anyhow::Ok(load)
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let l = t.await??;
        all.answered += l.answered;
        all.failed += l.failed;
        all.lost += l.lost;
        all.latencies.extend(l.latencies);
    }
    all.elapsed = started.elapsed();
    all.latencies.sort();
    ensure!(all.answered > 0, "{server} answered no query for {name}");
    Ok(all)
}

/// Waits until `server` answers `name` (the DNS server's informers have synced).
async fn wait_answers(server: SocketAddr, name: &str, who: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(l) = udp_load(server, name, 1, Duration::from_millis(50)).await {
            if l.failed == 0 && l.lost == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{who} at {server} did not answer {name} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `keelson-bench dns`: keelson-dns (the binary, against a real apiserver) and dnsmasq
/// with one hosts-file record, both on loopback, under the same load generator.
pub async fn run_dns(a: DnsArgs) -> anyhow::Result<()> {
    println!(
        "keelson-bench dns: {} Services, concurrency {}, {} s x {} rounds per server",
        a.services, a.concurrency, a.seconds, a.rounds
    );
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let api = Https::connect(&cluster, 2).await?;
    api.ensure_namespace(DNS_NS).await?;
    let mut cluster_ip = String::new();
    for i in 0..a.services.max(1) {
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("web-{i}"), "namespace": DNS_NS},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "web"}},
        });
        let (status, text) = api
            .request(
                "POST",
                &format!("/api/v1/namespaces/{DNS_NS}/services"),
                serde_json::to_vec(&body)?,
            )
            .await?;
        ensure!(status == 201, "Service create: {status}");
        if i == 0 {
            let v: Value = serde_json::from_slice(&text)?;
            cluster_ip = v["spec"]["clusterIP"].as_str().unwrap_or_default().into();
        }
    }
    let name = format!("web-0.{DNS_NS}.svc.cluster.local");

    let dir = cluster.dir.path().to_path_buf();
    let no_upstream = dir.join("resolv.conf");
    std::fs::write(&no_upstream, "# no upstream resolvers in benchmarks\n")?;
    let keelson_port = free_port();
    let keelson = cluster.start_component(
        "keelson-dns",
        "dns",
        &[
            "--bind-address=127.0.0.1".into(),
            format!("--port={keelson_port}"),
            format!("--health-port={}", free_port()),
            format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
            format!("--resolv-conf={}", no_upstream.display()),
        ],
    )?;
    let hosts = dir.join("bench.hosts");
    std::fs::write(&hosts, format!("{cluster_ip} {name}\n"))?;
    let dnsmasq_port = free_port();
    let dnsmasq = Owned(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground".to_string(),
                "--conf-file=/dev/null".into(),
                // It reads the hosts file after dropping privileges: the file sits
                // in the cluster's private directory.
                "--user=root".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                format!("--addn-hosts={}", hosts.display()),
                "--listen-address=127.0.0.1".into(),
                "--bind-interfaces".into(),
                format!("--port={dnsmasq_port}"),
                format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
                format!("--log-facility={}", dir.join("dnsmasq.log").display()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (Debian's dnsmasq-base; scripts/setup installs it)")?,
    );
    let keelson_addr: SocketAddr = ([127, 0, 0, 1], keelson_port).into();
    let dnsmasq_addr: SocketAddr = ([127, 0, 0, 1], dnsmasq_port).into();
    wait_answers(keelson_addr, &name, "keelson-dns").await?;
    wait_answers(dnsmasq_addr, &name, "dnsmasq").await?;
    let idle_rss = rss_mib(keelson.pid());

    let duration = Duration::from_secs(a.seconds);
    let mut runs: Vec<(Load, Load)> = Vec::new();
    for _ in 0..a.rounds.max(1) {
        let base = udp_load(dnsmasq_addr, &name, a.concurrency, duration).await?;
        let ours = udp_load(keelson_addr, &name, a.concurrency, duration).await?;
        println!(
            "round: dnsmasq {:.0} q/s, keelson-dns {:.0} q/s",
            base.qps(),
            ours.qps()
        );
        runs.push((base, ours));
    }
    let loaded_rss = rss_mib(keelson.pid());
    let dnsmasq_rss = rss_mib(dnsmasq.pid());
    // The median round by keelson-dns's rate.
    runs.sort_by(|x, y| x.1.qps().total_cmp(&y.1.qps()));
    let (base, ours) = &runs[runs.len() / 2];

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    let row = |who: &str, l: &Load| {
        println!(
            "| {who}: queries/s (UDP, {} in flight); p50 / p99; failed, lost | {:.0}; {} / {}; {}, {} |",
            a.concurrency,
            l.qps(),
            ms(percentile(&l.latencies, 0.5)),
            ms(percentile(&l.latencies, 0.99)),
            l.failed,
            l.lost
        )
    };
    row("baseline dnsmasq, one hosts-file record", base);
    row(&format!("keelson-dns, {} Services", a.services), ours);
    println!(
        "| ratio keelson-dns / dnsmasq (median round) | {:.2} |",
        ours.qps() / base.qps()
    );
    println!("| keelson-dns RSS idle / after the load | {idle_rss:.1} / {loaded_rss:.1} MiB |");
    println!("| dnsmasq RSS | {dnsmasq_rss:.1} MiB |");
    drop(dnsmasq);
    drop(keelson);
    drop(api);
    drop(cluster);
    Ok(())
}
