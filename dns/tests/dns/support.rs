//! A test cluster shared by the tests of this binary (each test its own namespace and
//! its own keelson-dns), a DNS client, `dig`, and polling.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, Client, PostParams};
use keelson_dns::DnsOptions;
use keelson_testkit::{free_port, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The shared cluster (started once), and a client for this test's runtime.
pub async fn cluster() -> (&'static Cluster, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    keelson_component::init_logging();
    let cluster = tokio::task::spawn_blocking(|| {
        static START: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = START.lock().unwrap_or_else(|e| e.into_inner());
        if CLUSTER.get().is_none() {
            let c = Cluster::start()
                .expect("starting the test cluster (cargo build -p keelson-apiserver first)");
            let _ = CLUSTER.set(c);
        }
        CLUSTER.get().expect("cluster")
    })
    .await
    .expect("join");
    let client = Client::from_kubeconfig(&cluster.kubeconfig).expect("client");
    (cluster, client)
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// A keelson-dns running in this test's runtime.
pub struct Dns {
    pub port: u16,
    pub health_port: u16,
    pub metrics_port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Options for a server on loopback and free ports, forwarding nowhere.
pub fn options() -> DnsOptions {
    DnsOptions {
        bind_address: "127.0.0.1".parse().unwrap(),
        port: free_port(),
        health_port: free_port(),
        metrics_bind_address: SocketAddr::from(([127, 0, 0, 1], free_port())),
        resolv_conf: "/nonexistent/resolv.conf".into(),
        ..Default::default()
    }
}

impl Dns {
    /// Start with `opts` and wait until `/ready`.
    pub async fn start(client: &Client, opts: DnsOptions) -> Dns {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (port, health_port, metrics_port) = (
            opts.port,
            opts.health_port,
            opts.metrics_bind_address.port(),
        );
        let task = tokio::spawn(keelson_dns::run(client.clone(), opts, async move {
            let _ = rx.await;
        }));
        let mut dns = Dns {
            port,
            health_port,
            metrics_port,
            stop: Some(tx),
            task: Some(task),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(t) = &dns.task {
                assert!(
                    !t.is_finished(),
                    "keelson-dns ended: {:?}",
                    dns.task.take().unwrap().await
                );
            }
            if http_get(dns.health_port, "/ready")
                .await
                .is_some_and(|(s, _)| s == 200)
            {
                return dns;
            }
            assert!(Instant::now() < deadline, "keelson-dns never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful shutdown; returns run's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("task").await.expect("join")
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// `GET path` on a loopback port: (status, body).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    conn.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

pub fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

/// One query over UDP (`tcp` false) or TCP to 127.0.0.1:`port`.
pub async fn query(port: u16, name: &str, qtype: RecordType, tcp: bool) -> Message {
    let req = request(name, qtype);
    let bytes = req.to_vec().expect("encode");
    let reply = if tcp {
        exchange_tcp(port, &bytes).await
    } else {
        exchange_udp(port, &bytes).await
    };
    let m = Message::from_vec(&reply).expect("decode reply");
    assert_eq!(m.metadata.id, req.metadata.id, "reply id");
    assert_eq!(m.queries, req.queries, "question echoed");
    m
}

pub async fn exchange_udp(port: u16, bytes: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(("127.0.0.1", port)).await.expect("connect");
    sock.send(bytes).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("udp reply within 5 s")
        .expect("recv");
    buf.truncate(n);
    buf
}

pub async fn exchange_tcp(port: u16, bytes: &[u8]) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        conn.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .expect("write");
        conn.write_all(bytes).await.expect("write");
        let n = conn.read_u16().await.expect("length") as usize;
        let mut buf = vec![0u8; n];
        conn.read_exact(&mut buf).await.expect("body");
        buf
    })
    .await
    .expect("tcp reply within 5 s")
}

/// The answers as "TYPE data" lines.
pub fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect()
}

/// Run the real `dig` against 127.0.0.1:`port`; its stdout.
pub fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("running dig (Debian's dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short` lines.
pub fn dig_short(port: u16, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut lines: Vec<String> = dig(port, &a).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The `status:` of a full dig output.
pub fn dig_status(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

/// Calls `f` every 20 ms until it returns `Some`; panics after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({timeout:?}) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Apply YAML with the real kubectl.
pub fn kubectl_apply(cluster: &Cluster, yaml: &str) {
    let out = cluster.kubectl_with("kubectl", &["apply", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
