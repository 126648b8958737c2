//! API Priority and Fairness on a real apiserver at tiny limits
//! (`--max-requests-inflight=2 --max-mutating-requests-inflight=1`: three seats, one
//! for `global-default`): a flood of lists from one user is answered 429 with
//! `Retry-After` once its queues are full, while an admin (`system:masters`, exempt)
//! and a node's Lease renewal (`node-high`) still get through; the real kubectl lists
//! Kubernetes' default FlowSchemas and PriorityLevelConfigurations.

use crate::support::RT;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_testkit::{ok, ApiserverOptions, Cluster};
use serde_json::{json, Value};
use std::sync::{Arc, LazyLock};

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| {
    Cluster::start_with(
        1,
        ApiserverOptions {
            extra_args: vec![
                "--max-requests-inflight=2".into(),
                "--max-mutating-requests-inflight=1".into(),
            ],
            ..Default::default()
        },
    )
    .expect("cluster")
});

/// An HTTP/2 connection as the admin (client certificate), a node, or the static token
/// user `tester` (no certificate).
async fn connect(cluster: &Cluster, who: &str) -> SendRequest<Full<Bytes>> {
    let config = match who {
        "admin" => {
            let kc = keelson_pki::Kubeconfig::load(&cluster.kubeconfig).expect("kubeconfig");
            keelson_pki::client_config(&kc).expect("client config")
        }
        "node" => {
            let dir = cluster.dir.path().join("apf-node");
            let creds = keelson_pki::issue_node_credentials(
                &cluster.pki,
                &dir,
                "apf-node",
                &["127.0.0.1".into()],
                &cluster.server_url(),
            )
            .expect("node credentials");
            let kc = keelson_pki::Kubeconfig::load(&creds.kubeconfig).expect("node kubeconfig");
            keelson_pki::client_config(&kc).expect("client config")
        }
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            for c in keelson_pki::load_certs(&cluster.pki.ca_cert).expect("ca") {
                roots.add(c).expect("root");
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
        }
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", cluster.apiservers[0].port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("tls");
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2");
    tokio::spawn(conn);
    send
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

async fn send(
    conn: &SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|v| v.to_string()).unwrap_or_default();
    let req = b.body(Full::new(Bytes::from(body))).expect("request");
    let mut conn = conn.clone();
    conn.ready().await.expect("ready");
    let resp = conn.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn uid_of(cluster: &Cluster, kind: &str, name: &str) -> String {
    let out = ok(cluster.kubectl(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"]));
    assert!(!out.is_empty(), "{kind} {name} has a uid");
    out
}

#[test]
fn a_flooding_user_gets_429_while_admins_and_nodes_get_through() {
    let cluster = &*CLUSTER;
    let (fs_uid, node_level, refused_fs, refused_pl) = RT.block_on(async {
        let admin = connect(cluster, "admin").await;
        // Heavier lists: 200 ConfigMaps of 8 KiB.
        let data = "x".repeat(8192);
        let mut creates = Vec::new();
        for i in 0..200 {
            let admin = admin.clone();
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("apf-{i}"), "namespace": "default"},
                "data": {"blob": data}});
            creates.push(tokio::spawn(async move {
                send(
                    &admin,
                    "POST",
                    "/api/v1/namespaces/default/configmaps",
                    None,
                    Some(cm),
                )
                .await
                .status
            }));
        }
        for c in creates {
            assert_eq!(c.await.unwrap(), 201);
        }
        // The flood: 700 concurrent lists as `tester` over 5 connections (the server
        // lets 200 streams run on each).
        let token = cluster.token.clone();
        let mut flood = Vec::new();
        for _ in 0..5 {
            let conn = connect(cluster, "tester").await;
            for _ in 0..140 {
                let conn = conn.clone();
                let token = token.clone();
                flood.push(tokio::spawn(async move {
                    send(&conn, "GET", "/api/v1/configmaps", Some(&token), None).await
                }));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Meanwhile the admin is exempt and a node renews its Lease in node-high.
        let started = std::time::Instant::now();
        let got = send(
            &admin,
            "GET",
            "/api/v1/namespaces/default/configmaps/apf-0",
            None,
            None,
        )
        .await;
        let admin_latency = started.elapsed();
        assert_eq!(got.status, 200, "{}", got.body);
        let fs_uid = got.headers
            [hyper::header::HeaderName::from_static("x-kubernetes-pf-flowschema-uid")]
        .to_str()
        .unwrap()
        .to_string();
        let node = connect(cluster, "node").await;
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "apf-node", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "apf-node", "leaseDurationSeconds": 40}});
        let renewed = send(
            &node,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            None,
            Some(lease),
        )
        .await;
        assert_eq!(renewed.status, 201, "{}", renewed.body);
        let node_level = renewed.headers["x-kubernetes-pf-prioritylevel-uid"]
            .to_str()
            .unwrap()
            .to_string();

        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let mut refused = None;
        for f in flood {
            let a = f.await.unwrap();
            *statuses.entry(a.status).or_default() += 1;
            if a.status == 429 && refused.is_none() {
                refused = Some(a);
            }
        }
        eprintln!("flood answers {statuses:?}; admin get took {admin_latency:?}");
        let refused = refused.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
        assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
        assert_eq!(refused.headers["retry-after"], "1");
        assert_eq!(refused.body["kind"], "Status");
        assert_eq!(refused.body["code"], 429);
        assert_eq!(refused.body["reason"], "TooManyRequests");
        assert_eq!(
            refused.body["message"],
            "Too many requests, please try again later."
        );
        assert_eq!(refused.body["details"]["retryAfterSeconds"], 1);
        let refused_fs = refused.headers["x-kubernetes-pf-flowschema-uid"]
            .to_str()
            .unwrap()
            .to_string();
        let refused_pl = refused.headers["x-kubernetes-pf-prioritylevel-uid"]
            .to_str()
            .unwrap()
            .to_string();
        (fs_uid, node_level, refused_fs, refused_pl)
    });
    // Each answer names where it was classified.
    assert_eq!(fs_uid, uid_of(cluster, "flowschema", "exempt"));
    assert_eq!(
        node_level,
        uid_of(cluster, "prioritylevelconfiguration", "node-high")
    );
    assert_eq!(refused_fs, uid_of(cluster, "flowschema", "global-default"));
    assert_eq!(
        refused_pl,
        uid_of(cluster, "prioritylevelconfiguration", "global-default")
    );
    let metrics = ok(cluster.kubectl(&["get", "--raw", "/metrics"]));
    assert!(
        metrics.lines().any(
            |l| l.starts_with("apiserver_flowcontrol_rejected_requests_total{")
                && l.contains("flow_schema=\"global-default\"")
                && l.contains("reason=\"queue-full\"")
        ),
        "no rejection counted"
    );
    assert!(metrics.lines().any(|l| l
        .starts_with("apiserver_flowcontrol_dispatched_requests_total{")
        && l.contains("priority_level=\"exempt\"")));
}

#[test]
fn kubectl_lists_the_default_configuration() {
    let cluster = &*CLUSTER;
    let schemas = ok(cluster.kubectl(&["get", "flowschemas"]));
    let header: Vec<&str> = schemas.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PRIORITYLEVEL",
            "MATCHINGPRECEDENCE",
            "DISTINGUISHERMETHOD",
            "AGE",
            "MISSINGPL"
        ]
    );
    let names: Vec<&str> = schemas
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for want in [
        "exempt",
        "probes",
        "system-leader-election",
        "endpoint-controller",
        "workload-leader-election",
        "system-node-high",
        "system-nodes",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-system-service-accounts",
        "service-accounts",
        "global-default",
        "catch-all",
    ] {
        assert!(names.contains(&want), "{want} missing from\n{schemas}");
    }
    assert_eq!(names.len(), 13, "{schemas}");
    let node_high = schemas
        .lines()
        .find(|l| l.starts_with("system-node-high "))
        .unwrap();
    let cells: Vec<&str> = node_high.split_whitespace().collect();
    assert_eq!(cells[1..4], ["node-high", "400", "ByUser"]);
    // The apiserver marks each schema's level as found.
    keelson_testkit::eventually(
        std::time::Duration::from_secs(10),
        "MISSINGPL False",
        || {
            let out = ok(cluster.kubectl(&["get", "flowschemas", "--no-headers"]));
            out.lines()
                .all(|l| l.trim_end().ends_with("False"))
                .then_some(())
        },
    );
    let levels = ok(cluster.kubectl(&["get", "prioritylevelconfigurations"]));
    let header: Vec<&str> = levels.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "NOMINALCONCURRENCYSHARES",
            "QUEUES",
            "HANDSIZE",
            "QUEUELENGTHLIMIT",
            "AGE"
        ]
    );
    let rows: Vec<Vec<&str>> = levels
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 8, "{levels}");
    let row = |n: &str| {
        rows.iter()
            .find(|r| r[0] == n)
            .unwrap_or_else(|| panic!("{n} in\n{levels}"))[1..6]
            .to_vec()
    };
    assert_eq!(row("exempt"), ["Exempt", "0", "<none>", "<none>", "<none>"]);
    assert_eq!(
        row("catch-all"),
        ["Limited", "5", "<none>", "<none>", "<none>"]
    );
    assert_eq!(row("node-high"), ["Limited", "40", "64", "6", "50"]);
    assert_eq!(row("workload-low"), ["Limited", "100", "128", "6", "50"]);
    for n in [
        "system",
        "leader-election",
        "workload-high",
        "global-default",
    ] {
        row(n);
    }
    // Kubernetes' validation: a schema only `exempt` may put first is refused.
    let bad = r#"{"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": "first"}, "spec": {"matchingPrecedence": 1,
        "priorityLevelConfiguration": {"name": "global-default"}}}"#;
    let out = cluster.kubectl_with("kubectl", &["create", "-f", "-"], Some(bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("only the schema named 'exempt' may have matching precedence 1"),
        "{err}"
    );
}
