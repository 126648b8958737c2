//! Names outside the cluster go to the upstream resolvers, byte for byte; none
//! answering, or none at all, is SERVFAIL.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::support::*;

/// A tiny upstream on loopback (UDP and TCP, one port): answers every A query with
/// 192.0.2.<tag>, and remembers the query bytes it got.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_reply(query: &[u8], tag: u8) -> Vec<u8> {
    let q = Message::from_vec(query).expect("query");
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_available = true;
    r.add_queries(q.queries.iter().cloned());
    let name = q.queries[0].name().clone();
    r.add_answer(Record::from_rdata(
        name,
        60,
        RData::A(A::new(192, 0, 2, tag)),
    ));
    r.to_vec().expect("encode")
}

async fn upstream(tag: u8) -> Upstream {
    let port = keelson_testkit::free_port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).await.expect("udp");
    let tcp = TcpListener::bind(("127.0.0.1", port)).await.expect("tcp");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s1 = seen.clone();
    let t1 = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            s1.lock().unwrap().push(buf[..n].to_vec());
            let _ = udp.send_to(&upstream_reply(&buf[..n], tag), peer).await;
        }
    });
    let s2 = seen.clone();
    let t2 = tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            let n = conn.read_u16().await.unwrap_or(0) as usize;
            let mut q = vec![0u8; n];
            if conn.read_exact(&mut q).await.is_err() {
                continue;
            }
            s2.lock().unwrap().push(q.clone());
            let r = upstream_reply(&q, tag);
            let _ = conn.write_all(&(r.len() as u16).to_be_bytes()).await;
            let _ = conn.write_all(&r).await;
        }
    });
    Upstream {
        port,
        seen,
        tasks: vec![t1, t2],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_are_relayed_to_the_upstream() {
    let (_cluster, client) = cluster().await;
    let up = upstream(7).await;
    let mut opts = options();
    opts.upstream = vec![format!("127.0.0.1:{}", up.port)];
    let dns = Dns::start(&client, opts).await;
    for tcp in [false, true] {
        let req = request("example.com.", RecordType::A);
        let bytes = req.to_vec().unwrap();
        let reply = if tcp {
            exchange_tcp(dns.port, &bytes).await
        } else {
            exchange_udp(dns.port, &bytes).await
        };
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(answers(&m), vec!["A 192.0.2.7"], "tcp={tcp}");
        assert_eq!(m.metadata.id, req.metadata.id);
        // The upstream got the client's query unchanged.
        assert_eq!(up.seen.lock().unwrap().last(), Some(&bytes), "tcp={tcp}");
    }
    // Reverse names the cluster does not know are the upstream's too.
    let m = query(dns.port, "9.9.9.9.in-addr.arpa.", RecordType::PTR, false).await;
    assert_eq!(answers(&m), vec!["A 192.0.2.7"]);
    assert_eq!(
        dig_short(dns.port, &["+tcp", "www.example.org"]),
        vec!["192.0.2.7"]
    );
    assert_eq!(dig_short(dns.port, &["www.example.org"]), vec!["192.0.2.7"]);
    // Cluster names never leave.
    let before = up.seen.lock().unwrap().len();
    let m = query(
        dns.port,
        "nope.default.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.seen.lock().unwrap().len(), before);

    let (_, metrics) = http_get(dns.metrics_port, "/metrics")
        .await
        .expect("metrics");
    let forwarded = format!(
        "coredns_forward_requests_total{{to=\"127.0.0.1:{}\"}}",
        up.port
    );
    assert!(metrics.contains(&forwarded), "{metrics}");
    assert!(
        metrics.contains("coredns_dns_requests_total{proto=\"udp\",type=\"A\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coredns_dns_request_duration_seconds_bucket"),
        "{metrics}"
    );
    dns.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_skipped_after_its_timeout() {
    let (_cluster, client) = cluster().await;
    // Bound, never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = upstream(8).await;
    let mut opts = options();
    opts.upstream = vec![
        silent.local_addr().unwrap().to_string(),
        format!("127.0.0.1:{}", up.port),
    ];
    let dns = Dns::start(&client, opts).await;
    let m = query(dns.port, "example.net.", RecordType::A, false).await;
    assert_eq!(answers(&m), vec!["A 192.0.2.8"]);
    dns.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_is_servfail_at_once() {
    let (cluster, client) = cluster().await;
    // The node's resolv.conf names only the cluster DNS itself: no upstream is left.
    let rc = cluster
        .dir
        .path()
        .join(format!("dns-resolv-{}.conf", std::process::id()));
    std::fs::write(
        &rc,
        "search example.org\nnameserver 10.96.0.10\noptions ndots:5\n",
    )
    .unwrap();
    let mut opts = options();
    opts.resolv_conf = rc;
    let dns = Dns::start(&client, opts).await;
    let start = Instant::now();
    for tcp in [false, true] {
        let m = query(dns.port, "example.com.", RecordType::A, tcp).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "tcp={tcp}"
        );
    }
    assert!(
        start.elapsed() < keelson_dns::forward::UPSTREAM_TIMEOUT,
        "SERVFAIL without waiting for any upstream: {:?}",
        start.elapsed()
    );
    let out = dig(dns.port, &["example.com"]);
    assert_eq!(dig_status(&out), "SERVFAIL", "{out}");
    dns.stop().await.expect("clean stop");
}

/// An ExternalName Service naming a host outside the cluster: the answer carries the
/// CNAME and the upstream's address for the target, over UDP and TCP, as CoreDNS's;
/// asked for the CNAME alone, nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_name_targets_outside_the_cluster_are_resolved_upstream() {
    let (cluster, client) = cluster().await;
    namespace(&client, "extchase").await;
    kubectl_apply(
        cluster,
        "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: extchase}\nspec: {type: ExternalName, externalName: db.example.net}\n",
    );
    let up = upstream(9).await;
    let mut opts = options();
    opts.upstream = vec![format!("127.0.0.1:{}", up.port)];
    let dns = Dns::start(&client, opts).await;
    let name = "db.extchase.svc.cluster.local.";
    for tcp in [false, true] {
        let m = poll(
            std::time::Duration::from_secs(5),
            "the ExternalName",
            || async {
                let m = query(dns.port, name, RecordType::A, tcp).await;
                (!m.answers.is_empty()).then_some(m)
            },
        )
        .await;
        assert_eq!(
            answers(&m),
            vec!["CNAME db.example.net.", "A 192.0.2.9"],
            "tcp={tcp}"
        );
        assert!(m.metadata.authoritative);
    }
    let asked = up.seen.lock().unwrap().len();
    assert!(asked >= 2, "the upstream was asked for the target");
    let m = query(dns.port, name, RecordType::CNAME, false).await;
    assert_eq!(answers(&m), vec!["CNAME db.example.net."]);
    assert_eq!(
        up.seen.lock().unwrap().len(),
        asked,
        "a CNAME query is not forwarded"
    );
    dns.stop().await.expect("clean stop");
}
