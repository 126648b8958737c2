//! Every record kind, over UDP and TCP, with our client and the real `dig`.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use keelson_client::Api;

use crate::support::*;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: rec}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: rec}
spec:
  clusterIP: None
  ports:
  - {name: pg, port: 5432}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: rec
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports:
- {name: pg, port: 5432, protocol: TCP}
endpoints:
- addresses: [10.1.0.1]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.1.0.2]
  conditions: {ready: true}
- addresses: [10.1.0.3]
  hostname: db-2
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: rec}
spec:
  type: ExternalName
  externalName: www.example.com
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_over_udp_and_tcp() {
    let (cluster, client) = cluster().await;
    namespace(&client, "rec").await;
    kubectl_apply(cluster, OBJECTS);
    let web = Api::<Service>::namespaced(client.clone(), "rec")
        .get("web")
        .await
        .expect("web");
    let ip = web.spec.unwrap().cluster_ip.unwrap();
    let octets: Vec<&str> = ip.split('.').collect();
    let reverse = format!(
        "{}.{}.{}.{}.in-addr.arpa.",
        octets[3], octets[2], octets[1], octets[0]
    );

    let dns = Dns::start(&client, options()).await;
    let p = dns.port;
    let a = RecordType::A;
    let cases: Vec<(String, RecordType, ResponseCode, Vec<String>)> = vec![
        (
            "web.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec![format!("A {ip}")],
        ),
        (
            "Web.REC.svc.Cluster.Local.".into(),
            a,
            ResponseCode::NoError,
            vec![format!("A {ip}")],
        ),
        (
            "web.rec.svc.cluster.local.".into(),
            RecordType::AAAA,
            ResponseCode::NoError,
            vec![],
        ),
        (
            "_http._tcp.web.rec.svc.cluster.local.".into(),
            RecordType::SRV,
            ResponseCode::NoError,
            vec!["SRV 0 100 80 web.rec.svc.cluster.local.".into()],
        ),
        (
            "_dns._udp.web.rec.svc.cluster.local.".into(),
            RecordType::SRV,
            ResponseCode::NoError,
            vec!["SRV 0 100 53 web.rec.svc.cluster.local.".into()],
        ),
        (
            reverse.clone(),
            RecordType::PTR,
            ResponseCode::NoError,
            vec!["PTR web.rec.svc.cluster.local.".into()],
        ),
        (
            "db.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec!["A 10.1.0.1".into(), "A 10.1.0.2".into()],
        ),
        (
            "db-0.db.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec!["A 10.1.0.1".into()],
        ),
        (
            "db-2.db.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NXDomain,
            vec![],
        ),
        (
            "_pg._tcp.db.rec.svc.cluster.local.".into(),
            RecordType::SRV,
            ResponseCode::NoError,
            vec![
                "SRV 0 100 5432 db-0.db.rec.svc.cluster.local.".into(),
                "SRV 0 100 5432 10-1-0-2.db.rec.svc.cluster.local.".into(),
            ],
        ),
        (
            "1.0.1.10.in-addr.arpa.".into(),
            RecordType::PTR,
            ResponseCode::NoError,
            vec!["PTR db-0.db.rec.svc.cluster.local.".into()],
        ),
        (
            "ext.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec!["CNAME www.example.com.".into()],
        ),
        (
            "10-9-8-7.rec.pod.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec!["A 10.9.8.7".into()],
        ),
        (
            "10-9-8-700.rec.pod.cluster.local.".into(),
            a,
            ResponseCode::NXDomain,
            vec![],
        ),
        (
            "dns-version.cluster.local.".into(),
            RecordType::TXT,
            ResponseCode::NoError,
            vec!["TXT 1.1.0".into()],
        ),
        (
            "nope.rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NXDomain,
            vec![],
        ),
        (
            "rec.svc.cluster.local.".into(),
            a,
            ResponseCode::NoError,
            vec![],
        ),
        (
            "no-such-namespace.svc.cluster.local.".into(),
            a,
            ResponseCode::NXDomain,
            vec![],
        ),
    ];
    for tcp in [false, true] {
        for (name, t, rcode, want) in &cases {
            let m = query(p, name, *t, tcp).await;
            assert_eq!(
                (
                    m.metadata.response_code,
                    answers(&m),
                    m.metadata.authoritative
                ),
                (*rcode, want.clone(), true),
                "{name} {t} tcp={tcp}"
            );
            if want.is_empty() {
                assert!(
                    m.authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA),
                    "{name} {t}: SOA in authority"
                );
            }
        }
    }

    // The real dig, over UDP and TCP.
    for proto in ["+notcp", "+tcp"] {
        assert_eq!(
            dig_short(p, &[proto, "web.rec.svc.cluster.local"]),
            vec![ip.clone()]
        );
        assert_eq!(
            dig_short(p, &[proto, "SRV", "_http._tcp.web.rec.svc.cluster.local"]),
            vec!["0 100 80 web.rec.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            dig_short(p, &[proto, "-x", &ip]),
            vec!["web.rec.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            dig_short(p, &[proto, "db.rec.svc.cluster.local"]),
            vec!["10.1.0.1".to_string(), "10.1.0.2".to_string()]
        );
        assert_eq!(
            dig_short(p, &[proto, "CNAME", "ext.rec.svc.cluster.local"]),
            vec!["www.example.com.".to_string()]
        );
        assert_eq!(
            dig_short(p, &[proto, "TXT", "dns-version.cluster.local"]),
            vec!["\"1.1.0\"".to_string()]
        );
        let out = dig(p, &[proto, "nope.rec.svc.cluster.local"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
        assert!(out.contains(" aa"), "authoritative: {out}");
        let out = dig(p, &[proto, "AAAA", "web.rec.svc.cluster.local"]);
        assert_eq!(dig_status(&out), "NOERROR", "{out}");
        assert!(
            out.contains("ANSWER: 0") && out.contains("SOA"),
            "NODATA with SOA: {out}"
        );
    }
    dns.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_set_tc_over_udp_and_come_whole_over_tcp() {
    let (cluster, client) = cluster().await;
    namespace(&client, "trunc").await;
    let endpoints: String = (1..=60)
        .map(|i| format!("- addresses: [10.3.0.{i}]\n"))
        .collect();
    kubectl_apply(
        cluster,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: trunc}}\nspec: {{clusterIP: None}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: big-1, namespace: trunc, labels: {{kubernetes.io/service-name: big}}}}\naddressType: IPv4\nendpoints:\n{endpoints}"
        ),
    );
    let dns = Dns::start(&client, options()).await;
    let name = "big.trunc.svc.cluster.local.";
    let m = poll(
        Duration::from_secs(5),
        "all 60 endpoints over TCP",
        || async {
            let m = query(dns.port, name, RecordType::A, true).await;
            (m.answers.len() == 60).then_some(m)
        },
    )
    .await;
    assert!(!m.metadata.truncation);
    let udp = query(dns.port, name, RecordType::A, false).await;
    assert!(udp.metadata.truncation, "60 A records do not fit 512 bytes");
    assert!(udp.answers.len() < 60);
    // dig: +ignore shows the truncated reply; without it dig retries over TCP.
    let out = dig(dns.port, &["+ignore", "+noedns", name]);
    assert!(out.contains(" tc"), "{out}");
    let out = dig(dns.port, &["+noedns", name]);
    assert!(out.contains("ANSWER: 60"), "{out}");
    dns.stop().await.expect("clean stop");
}

/// The search list is the client's business: with `ndots:5` every candidate before
/// the right one must be NXDOMAIN, and the real `dig` walking it lands on the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_list_walks_to_the_service() {
    let (cluster, client) = cluster().await;
    namespace(&client, "srch").await;
    namespace(&client, "srch-other").await;
    kubectl_apply(
        cluster,
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: srch-other}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: local, namespace: srch}\nspec: {ports: [{port: 80}]}\n",
    );
    let dns = Dns::start(&client, options()).await;
    let ip = |ns: &str, name: &str| {
        let out = cluster.kubectl(&[
            "get",
            "svc",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (api_ip, local_ip) = (ip("srch-other", "api"), ip("srch", "local"));
    // A pod in `srch` asking for `api.srch-other`: the first candidate does not exist.
    let first = query(
        dns.port,
        "api.srch-other.srch.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    let search = [
        "srch.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ];
    let walk = |name: &str| -> Vec<String> {
        // dig takes one search domain at a time: walk the list as a resolver does,
        // up to the first domain that gives an answer.
        for domain in search {
            let got = dig_short(
                dns.port,
                &["+search", "+ndots=5", &format!("+domain={domain}"), name],
            );
            if !got.is_empty() {
                return got;
            }
        }
        vec![]
    };
    assert_eq!(walk("api.srch-other"), vec![api_ip]);
    assert_eq!(walk("local"), vec![local_ip]);
    dns.stop().await.expect("clean stop");
}
