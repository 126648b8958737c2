//! Cluster DNS from pods on the two real nodes: every record kind of the Kubernetes DNS
//! specification through busybox's `nslookup` (UDP, the pod's resolv.conf and its
//! `ndots:5` search list) and through the real `dig` over TCP in the pod's network
//! namespace; a Service created after the pod resolves at once; a DNS server that
//! stops and comes back leaves no stale conntrack entry behind.

use std::time::{Duration, Instant};

use keelson_e2e::NODE_CLUSTER;
use keelson_testkit::ok;

const NS: &str = "dns-e2e";

fn nslookup(args: &[&str]) -> (bool, String) {
    let mut all = vec!["exec", "-n", NS, "client", "--", "nslookup"];
    all.extend_from_slice(args);
    let out = NODE_CLUSTER.kubectl(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `dig ARGS` in the client pod's network namespace, against the cluster DNS address.
fn dig(args: &[&str]) -> String {
    let out = NODE_CLUSTER
        .pod_netns_command(NS, "client", "dig")
        .args(["@10.96.0.10", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `nslookup ARGS` until its output contains every one of `want`.
fn resolves(args: &[&str], want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = nslookup(args);
        if want.iter().all(|w| text.contains(w)) {
            return text;
        }
        if Instant::now() > deadline {
            panic!(
                "nslookup {args:?}: wanted {want:?}, got:\n{text}\n{}",
                NODE_CLUSTER.agent_logs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn field(v: &serde_json::Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

fn reverse(ip: &str) -> String {
    let mut o: Vec<&str> = ip.split('.').collect();
    o.reverse();
    format!("{}.in-addr.arpa", o.join("."))
}

#[test]
fn pods_resolve_every_record_kind_over_udp_and_tcp() {
    let c = &*NODE_CLUSTER;
    ok(c.kubectl(&["create", "namespace", NS]));
    c.apply(
        NS,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {node0}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-0, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db-0, labels: {{app: db}}}}
spec:
  hostname: db-0
  subdomain: db
  nodeName: {node0}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db-1, labels: {{app: db}}}}
spec:
  hostname: db-1
  subdomain: db
  nodeName: {node1}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext}}
spec:
  type: ExternalName
  externalName: www.example.org
"#,
            node0 = c.nodes[0].name(),
            node1 = c.nodes[1].name()
        ),
    );
    for p in ["client", "web-0", "db-0", "db-1"] {
        c.wait_running(NS, p, true);
    }
    let svc: serde_json::Value = serde_json::from_str(&ok(
        c.kubectl(&["get", "service", "-n", NS, "web", "-o", "json"])
    ))
    .unwrap();
    let cluster_ip = field(&svc, "/spec/clusterIP");
    let db0 = field(&c.pod(NS, "db-0"), "/status/podIP");
    let db1 = field(&c.pod(NS, "db-1"), "/status/podIP");
    let web_fqdn = format!("web.{NS}.svc.cluster.local");

    // A: a ClusterIP Service by its short name (search list) and its full name.
    resolves(&["web"], &[&cluster_ip, &web_fqdn]);
    resolves(&[&web_fqdn], &[&cluster_ip]);
    // Headless: one A per ready endpoint, and hostname.subdomain for the pods.
    resolves(&["db"], &[&db0, &db1]);
    // (busybox's nslookup walks the search list only for names without a dot.)
    resolves(&[&format!("db-0.db.{NS}.svc.cluster.local")], &[&db0]);
    resolves(&[&format!("db-1.db.{NS}.svc.cluster.local")], &[&db1]);
    // SRV for a named port.
    resolves(
        &["-type=SRV", &format!("_http._tcp.{web_fqdn}")],
        &["80", &web_fqdn],
    );
    // PTR for a ClusterIP and for a headless endpoint.
    resolves(&["-type=PTR", &reverse(&cluster_ip)], &[&web_fqdn]);
    resolves(
        &["-type=PTR", &reverse(&db0)],
        &[&format!("db-0.db.{NS}.svc.cluster.local")],
    );
    // CNAME for ExternalName; pod A records; the schema version.
    resolves(
        &["-type=CNAME", &format!("ext.{NS}.svc.cluster.local")],
        &["www.example.org"],
    );
    resolves(
        &[&format!("10-1-2-3.{NS}.pod.cluster.local")],
        &["10.1.2.3"],
    );
    resolves(&["-type=TXT", "dns-version.cluster.local"], &["1.1.0"]);
    // A name that does not exist.
    let (found, text) = nslookup(&[&format!("nosuch.{NS}.svc.cluster.local")]);
    assert!(!found && text.contains("NXDOMAIN"), "{text}");

    // TCP, with the real dig inside the pod's network namespace.
    assert_eq!(dig(&["+tcp", "+short", &web_fqdn]).trim(), cluster_ip);
    let srv = dig(&[
        "+tcp",
        "+short",
        "SRV",
        &format!("_pg._tcp.db.{NS}.svc.cluster.local"),
    ]);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    let nx = dig(&["+tcp", &format!("nosuch.{NS}.svc.cluster.local")]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");

    // A Service created now resolves at once (polled with dig; no kubectl exec).
    ok(c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "late",
        "-n",
        NS,
        "--tcp=80",
    ]));
    let created = Instant::now();
    let late_ip = ok(c.kubectl(&[
        "get",
        "service",
        "-n",
        NS,
        "late",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]));
    let late = format!("late.{NS}.svc.cluster.local");
    loop {
        if dig(&["+short", &late]).trim() == late_ip {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(3),
            "a new Service did not resolve within 3 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "a new Service resolved {:?} after its create returned",
        created.elapsed()
    );

    ok(c.kubectl(&["delete", "namespace", NS, "--wait=false"]));
}

/// Queries from one fixed source port keep one conntrack entry; when the DNS server it
/// points at stops (its endpoint withdrawn), the proxy deletes the entry, so the same
/// client keeps getting answers from the other node; once back, it serves again.
#[test]
fn a_stopped_dns_server_leaves_no_stale_conntrack_entry() {
    let c = &*NODE_CLUSTER;
    let ns = "dns-restart";
    ok(c.kubectl(&["create", "namespace", ns]));
    c.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
"#,
            node = c.nodes[0].name()
        ),
    );
    c.wait_running(ns, "client", true);
    let query = || {
        let out = c
            .pod_netns_command(ns, "client", "dig")
            .args([
                "@10.96.0.10",
                "-b",
                "0.0.0.0#5353",
                "+time=1",
                "+tries=1",
                "+short",
                "kubernetes.default.svc.cluster.local",
            ])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).trim() == "10.96.0.1"
    };
    let endpoints = || {
        ok(c.kubectl(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ]))
    };
    for node in &c.nodes {
        // Bind the flow to some endpoint first.
        keelson_testkit::eventually(Duration::from_secs(20), "DNS answers", || {
            query().then_some(())
        });
        node.dns.stop(libc::SIGTERM);
        let ip = node.host.ip.to_string();
        keelson_testkit::eventually(Duration::from_secs(20), "the endpoint withdrawn", || {
            (!endpoints().contains(&ip)).then_some(())
        });
        // One proxy sync later, the same source port reaches the other server.
        std::thread::sleep(Duration::from_millis(1500));
        for _ in 0..5 {
            assert!(
                query(),
                "a query from the same source port failed after {} stopped\n{}",
                node.name(),
                c.agent_logs()
            );
        }
        node.restart_dns().expect("restarting keelson-dns");
        keelson_testkit::eventually(Duration::from_secs(20), "the endpoint back", || {
            endpoints().contains(&ip).then_some(())
        });
    }
    assert!(query());
    ok(c.kubectl(&["delete", "namespace", ns, "--wait=false"]));
}
