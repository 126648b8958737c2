//! API Priority and Fairness under a flood: one plain user (the static token user
//! `tester`) keeps many `GET /api/v1/pods` in flight over a store of pods while node
//! identities (`system:node:<name>`, group `system:nodes`) renew their Leases on a
//! fixed period and the admin (`system:masters`) reads one pod now and then. The same
//! run twice: APF on, then `--enable-priority-and-fairness=false` (max-in-flight only).
//! Prints p50/p99 of the renewals and the admin's gets, the renewal periods achieved,
//! and how the flood was answered. Asserts nothing.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_testkit::{ApiserverOptions, Cluster};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct FairnessArgs {
    /// Pods stored (what every flooding list returns).
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Lists the flooding user keeps in flight.
    #[arg(long, default_value_t = 400)]
    pub flood: usize,
    /// Nodes renewing their Lease.
    #[arg(long, default_value_t = 20)]
    pub nodes: usize,
    /// Lease renewal period, milliseconds (the kubelet's is 10 s; shorter gives more
    /// samples).
    #[arg(long, default_value_t = 1000)]
    pub period_ms: u64,
    /// Seconds measured in each mode.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Run one mode only: `on` (APF) or `off` (max-in-flight).
    #[arg(long)]
    pub only: Option<String>,
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(cluster: &Cluster, tls: rustls::ClientConfig) -> anyhow::Result<Conn> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", cluster.apiservers[0].port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(conn);
    Ok(send)
}

fn kubeconfig_tls(path: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    let kc = keelson_pki::Kubeconfig::load(path)?;
    keelson_pki::client_config(&kc)
}

/// Trusts the cluster CA, presents no certificate (for bearer tokens).
fn token_tls(cluster: &Cluster) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in keelson_pki::load_certs(&cluster.pki.ca_cert)? {
        roots.add(c)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn request(
    conn: &Conn,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<u16> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let mut conn = conn.clone();
    conn.ready().await?;
    let resp = conn
        .send_request(b.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Figures {
    lease: Vec<Duration>,
    lease_failed: usize,
    periods: Vec<Duration>,
    admin: Vec<Duration>,
    flood: BTreeMap<u16, usize>,
}

async fn one_mode(args: &FairnessArgs, apf: bool) -> anyhow::Result<Figures> {
    let opts = ApiserverOptions {
        extra_args: vec![
            format!("--enable-priority-and-fairness={apf}"),
            format!("--max-requests-inflight={}", args.max_requests_inflight),
            format!(
                "--max-mutating-requests-inflight={}",
                args.max_mutating_requests_inflight
            ),
        ],
        ..Default::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(1, opts)).await??;
    let admin = connect(&cluster, kubeconfig_tls(&cluster.kubeconfig)?).await?;
    // The store every flooding list returns.
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..args.pods {
        let admin = admin.clone();
        creates.spawn(async move {
            let body = crate::pod_json("default", &format!("flood-{i}"));
            request(
                &admin,
                "POST",
                "/api/v1/namespaces/default/pods",
                None,
                body,
            )
            .await
        });
        if creates.len() >= 32 {
            creates.join_next().await;
        }
    }
    while creates.join_next().await.is_some() {}
    // Node identities, each with its own certificate and connection, and their Leases.
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let name = format!("bench-node-{i}");
        let creds = keelson_pki::issue_node_credentials(
            &cluster.pki,
            &cluster.dir.path().join(&name),
            &name,
            &["127.0.0.1".into()],
            &cluster.server_url(),
        )?;
        let conn = connect(&cluster, kubeconfig_tls(&creds.kubeconfig)?).await?;
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}});
        let status = request(
            &conn,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            None,
            serde_json::to_vec(&lease)?,
        )
        .await?;
        anyhow::ensure!(status == 201, "creating lease {name}: {status}");
        nodes.push((name, conn));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flood_answers = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let mut flood = Vec::new();
    let token = cluster.token.clone();
    let flooders: Vec<Conn> = {
        let mut v = Vec::new();
        for _ in 0..args.flood.div_ceil(100) {
            v.push(connect(&cluster, token_tls(&cluster)?).await?);
        }
        v
    };
    for i in 0..args.flood {
        let conn = flooders[i % flooders.len()].clone();
        let (stop, answers, token) = (stop.clone(), flood_answers.clone(), token.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = request(&conn, "GET", "/api/v1/pods", Some(&token), Vec::new())
                    .await
                    .unwrap_or(0);
                *answers.lock().unwrap().entry(status).or_default() += 1;
                if status == 429 {
                    // Retry-After: 1, honoured as client-go honours it.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let period = Duration::from_millis(args.period_ms);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let lease_samples = Arc::new(Mutex::new((Vec::new(), 0usize, Vec::new())));
    let mut renewers = Vec::new();
    for (i, (name, conn)) in nodes.into_iter().enumerate() {
        let samples = lease_samples.clone();
        renewers.push(tokio::spawn(async move {
            // Spread the nodes over the period.
            tokio::time::sleep(period * i as u32 / 20).await;
            let mut ticker = tokio::time::interval(period);
            let mut last_ok: Option<Instant> = None;
            while Instant::now() < deadline {
                ticker.tick().await;
                let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                        "renewTime": chrono_now()}});
                let started = Instant::now();
                let status = request(
                    &conn,
                    "PUT",
                    &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"),
                    None,
                    serde_json::to_vec(&lease).unwrap_or_default(),
                )
                .await
                .unwrap_or(0);
                let took = started.elapsed();
                let mut s = samples.lock().unwrap();
                if status == 200 {
                    s.0.push(took);
                    let now = Instant::now();
                    if let Some(prev) = last_ok {
                        s.2.push(now - prev);
                    }
                    last_ok = Some(now);
                } else {
                    s.1 += 1;
                }
            }
        }));
    }
    let admin_task = {
        let admin = admin.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let status = request(
                    &admin,
                    "GET",
                    "/api/v1/namespaces/default/pods/flood-0",
                    None,
                    Vec::new(),
                )
                .await
                .unwrap_or(0);
                if status == 200 {
                    out.push(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            out
        })
    };
    for r in renewers {
        r.await?;
    }
    if std::env::var_os("FAIRNESS_METRICS").is_some() {
        let resp = {
            let mut conn = admin.clone();
            conn.ready().await?;
            let req = http::Request::builder()
                .uri("https://localhost/metrics")
                .body(Full::new(Bytes::new()))?;
            conn.send_request(req)
                .await?
                .into_body()
                .collect()
                .await?
                .to_bytes()
        };
        for l in String::from_utf8_lossy(&resp).lines() {
            let wanted = (l.starts_with("apiserver_flowcontrol_") && !l.contains("_bucket"))
                || (l.starts_with("apiserver_request_duration_seconds_")
                    && l.contains("leases")
                    && !l.contains("_bucket"))
                || (l.starts_with("etcd_request_duration_seconds_") && !l.contains("_bucket"));
            if wanted {
                println!("  {l}");
            }
        }
    }
    let mut admin_lat = admin_task.await?;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = tokio::time::timeout(Duration::from_secs(30), f).await;
    }
    let (mut lease, lease_failed, mut periods) =
        std::mem::take(&mut *lease_samples.lock().unwrap());
    lease.sort();
    periods.sort();
    admin_lat.sort();
    let flood = flood_answers.lock().unwrap().clone();
    drop(cluster);
    Ok(Figures {
        lease,
        lease_failed,
        periods,
        admin: admin_lat,
        flood,
    })
}

/// RFC 3339 with microseconds, as a Lease's renewTime.
fn chrono_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

pub async fn run(args: FairnessArgs) -> anyhow::Result<()> {
    println!(
        "keelson-bench fairness: {} pods listed by {} concurrent lists (user tester); {} nodes renewing every {} ms; admin get every 200 ms; {} s per mode; --max-requests-inflight={} --max-mutating-requests-inflight={}",
        args.pods, args.flood, args.nodes, args.period_ms, args.seconds,
        args.max_requests_inflight, args.max_mutating_requests_inflight
    );
    let mut rows = Vec::new();
    let modes: Vec<bool> = match args.only.as_deref() {
        Some("on") => vec![true],
        Some("off") => vec![false],
        _ => vec![true, false],
    };
    for apf in modes {
        let f = one_mode(&args, apf).await?;
        let mode = if apf {
            "APF on"
        } else {
            "APF off (max-in-flight)"
        };
        println!(
            "{mode}: lease renewals {} ok / {} failed, p50 {} p99 {}; renewal period p50 {} p99 {} max {}; admin get p50 {} p99 {} ({} samples); flood answers {:?}",
            f.lease.len(),
            f.lease_failed,
            ms(percentile(&f.lease, 0.5)),
            ms(percentile(&f.lease, 0.99)),
            ms(percentile(&f.periods, 0.5)),
            ms(percentile(&f.periods, 0.99)),
            ms(f.periods.last().copied().unwrap_or_default()),
            ms(percentile(&f.admin, 0.5)),
            ms(percentile(&f.admin, 0.99)),
            f.admin.len(),
            f.flood,
        );
        rows.push((mode, f));
    }
    if rows.len() < 2 {
        return Ok(());
    }
    println!();
    println!("| figure | {} | {} |", rows[0].0, rows[1].0);
    println!("| --- | --- | --- |");
    let line = |name: &str, get: &dyn Fn(&Figures) -> String| {
        println!("| {name} | {} | {} |", get(&rows[0].1), get(&rows[1].1));
    };
    line("lease renewal p50 / p99", &|f| {
        format!(
            "{} / {}",
            ms(percentile(&f.lease, 0.5)),
            ms(percentile(&f.lease, 0.99))
        )
    });
    line("lease renewals ok / failed", &|f| {
        format!("{} / {}", f.lease.len(), f.lease_failed)
    });
    line("renewal period p50 / p99 / max", &|f| {
        format!(
            "{} / {} / {}",
            ms(percentile(&f.periods, 0.5)),
            ms(percentile(&f.periods, 0.99)),
            ms(f.periods.last().copied().unwrap_or_default())
        )
    });
    line("admin get p50 / p99", &|f| {
        format!(
            "{} / {}",
            ms(percentile(&f.admin, 0.5)),
            ms(percentile(&f.admin, 0.99))
        )
    });
    line("flood lists answered 200 / 429", &|f| {
        format!(
            "{} / {}",
            f.flood.get(&200).copied().unwrap_or(0),
            f.flood.get(&429).copied().unwrap_or(0)
        )
    });
    Ok(())
}
