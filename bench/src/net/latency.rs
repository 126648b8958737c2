//! Request latency through a ClusterIP beside straight to the pod IP: two real nodes,
//! an HTTP server pod on one, the measuring client in the other node's namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use keelson_testkit::node_cluster::NodeCluster;
use serde_json::{json, Value};

use super::{reexec_in, secs};
use crate::ms;
#[derive(clap::Args, Clone, Debug)]
pub struct LatencyArgs {
    /// Sequential requests to each target (interleaved: pod IP, ClusterIP, ...).
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
}

/// The hidden `tcp-latency` subcommand, run in the client node's namespace.
#[derive(clap::Args, Clone, Debug)]
pub struct TcpLatencyArgs {
    #[arg(long)]
    pub pod: SocketAddr,
    #[arg(long)]
    pub service: SocketAddr,
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
}

/// One HTTP/1.0 request on a new connection: connect, GET, read to the close.
fn http_request(target: SocketAddr) -> anyhow::Result<()> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_nodelay(true)?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    ensure!(
        reply.starts_with(b"HTTP/1.0 200") || reply.starts_with(b"HTTP/1.1 200"),
        "{target} answered {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(40)])
    );
    Ok(())
}

pub fn tcp_latency(a: TcpLatencyArgs) -> anyhow::Result<()> {
    let targets = [a.pod, a.service];
    // The ClusterIP answers once the proxy on this node has synced the endpoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in targets {
        while let Err(e) = http_request(t) {
            if Instant::now() > deadline {
                bail!("{t} did not answer within 60 s: {e}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for _ in 0..50 {
        for t in targets {
            http_request(t)?;
        }
    }
    let mut lat = [Vec::new(), Vec::new()];
    for _ in 0..a.requests {
        for (k, t) in targets.iter().enumerate() {
            let started = Instant::now();
            http_request(*t)?;
            lat[k].push(started.elapsed().as_secs_f64());
        }
    }
    let summary = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        json!({"p50": at(0.5), "p99": at(0.99), "mean": v.iter().sum::<f64>() / v.len() as f64})
    };
    let [mut pod, mut service] = lat;
    println!(
        "{}",
        json!({"pod": summary(&mut pod), "service": summary(&mut service)})
    );
    Ok(())
}

const ECHO_MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: bench-echo
  labels: {app: bench-echo}
spec:
  nodeName: NODE
  containers:
  - name: httpd
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: bench-echo
spec:
  selector: {app: bench-echo}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// `keelson-bench service-latency`: two real nodes, an HTTP server pod on the first,
/// the measuring client in the second node's namespace.
pub async fn run_service_latency(a: LatencyArgs) -> anyhow::Result<()> {
    println!(
        "keelson-bench service-latency: 2 real nodes, {} sequential requests per target",
        a.requests
    );
    tokio::task::spawn_blocking(move || service_latency(a)).await?
}

fn service_latency(a: LatencyArgs) -> anyhow::Result<()> {
    let c = NodeCluster::start(2)?;
    let server_node = c.nodes[0].name().to_string();
    c.apply(
        "default",
        &ECHO_MANIFEST
            .replace("NODE", &server_node)
            .replace("IMAGE", keelson_containerd::BUSYBOX_IMAGE),
    );
    let pod = c.wait_running("default", "bench-echo", true);
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .context("the echo pod has no IP")?
        .to_string();
    let cluster_ip = keelson_testkit::ok(c.kubectl(&[
        "get",
        "service",
        "bench-echo",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]));
    let client = &c.nodes[1].host;
    let figures = reexec_in(
        &client.netns_path,
        &[
            "tcp-latency".into(),
            format!("--pod={pod_ip}:8080"),
            format!("--service={}:80", cluster_ip.trim()),
            format!("--requests={}", a.requests),
        ],
    )?;
    let d = |v: &Value| ms(secs(v));
    println!();
    println!(
        "| figure (client in node {}'s namespace, server pod on {server_node}) | value |",
        c.nodes[1].name()
    );
    println!("| --- | --- |");
    println!(
        "| straight to the pod IP: p50 / p99 (mean) | {} / {} ({}) |",
        d(&figures["pod"]["p50"]),
        d(&figures["pod"]["p99"]),
        d(&figures["pod"]["mean"])
    );
    println!(
        "| through the ClusterIP: p50 / p99 (mean) | {} / {} ({}) |",
        d(&figures["service"]["p50"]),
        d(&figures["service"]["p99"]),
        d(&figures["service"]["mean"])
    );
    let ratio = |k: &str| {
        figures["service"][k].as_f64().unwrap_or_default()
            / figures["pod"][k].as_f64().unwrap_or(f64::NAN)
    };
    println!(
        "| ratio ClusterIP / pod IP: p50 / p99 | {:.2} / {:.2} |",
        ratio("p50"),
        ratio("p99")
    );
    Ok(())
}
