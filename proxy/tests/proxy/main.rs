//! The keelson-proxy binary against a real etcd and apiserver, in a network namespace
//! of the test's own on a test bridge (the host's ruleset is never touched): a burst of
//! 1,000 changes costs a handful of syncs, the table holds every Service, the rules stay
//! when the proxy stops, and `--cleanup` removes them.

use std::time::{Duration, Instant};

use keelson_testkit::node::{OutsideHost, TestNetwork};
use keelson_testkit::{binary, ok, start_process, ApiserverOptions, Cluster};

const SERVICES: usize = 500;

fn nft(host: &OutsideHost, args: &[&str]) -> String {
    let out = host.command("nft").args(args).output().expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(host: &OutsideHost, name: &str) -> f64 {
    let out = host
        .command("curl")
        .args(["-sS", "--max-time", "3", "http://127.0.0.1:10249/metrics"])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Services `from..to` with one EndpointSlice each (two endpoints), as one manifest.
fn manifest_range(from: usize, to: usize) -> String {
    let mut out = String::new();
    for i in from..to {
        out.push_str(&format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s{i}-a
  namespace: default
  labels: {{kubernetes.io/service-name: s{i}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["10.244.{a}.{b}"]
- addresses: ["10.244.{a}.{c}"]
"#,
            a = i / 100,
            b = (i % 100) * 2 + 1,
            c = (i % 100) * 2 + 2,
        ));
    }
    out
}

#[test]
fn a_burst_of_changes_costs_a_handful_of_syncs_and_cleanup_removes_the_rules() {
    let network = TestNetwork::create().expect("test network");
    let gateway = network.gateway_ip();
    let cluster = Cluster::start_with(
        1,
        ApiserverOptions {
            bind_address: Some("0.0.0.0".into()),
            extra_sans: vec![gateway.to_string()],
            ..Default::default()
        },
    )
    .expect("cluster");
    let node = network.add_outside_host().expect("a node namespace");
    let kubeconfig = cluster.dir.path().join("proxy.kubeconfig");
    cluster
        .write_kubeconfig(
            &kubeconfig,
            &format!("https://{gateway}:{}", cluster.apiservers[0].port),
        )
        .unwrap();
    let log = cluster.dir.path().join("proxy.log");
    let mut cmd = node.nsenter_command(binary("keelson-proxy").unwrap());
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args([
            "--hostname-override=n1",
            "--cluster-cidr=10.244.0.0/16",
            "--healthz-bind-address=127.0.0.1:10256",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut proxy = start_process(&mut cmd, "keelson-proxy").expect("keelson-proxy");
    let log_tail = || std::fs::read_to_string(&log).unwrap_or_default();

    // The first sync programs the `kubernetes` Service.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nft(&node, &["list", "table", "ip", "keelson-proxy"]).contains("svc-default/kubernetes")
    {
        assert!(Instant::now() < deadline, "no first sync\n{}", log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    let syncs_before = metric(&node, "kubeproxy_sync_proxy_rules_duration_seconds_count");
    let changes_before = metric(&node, "kubeproxy_sync_proxy_rules_endpoint_changes_total")
        + metric(&node, "kubeproxy_sync_proxy_rules_service_changes_total");

    let started = Instant::now();
    // Ten kubectl processes at once, so the changes arrive as a burst.
    std::thread::scope(|scope| {
        for chunk in 0..10 {
            let cluster = &cluster;
            scope.spawn(move || {
                let part = manifest_range(chunk * SERVICES / 10, (chunk + 1) * SERVICES / 10);
                ok(cluster.kubectl_with("kubectl", &["create", "-f", "-"], Some(&part)));
            });
        }
    });
    println!("kubectl create returned after {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let map = nft(
            &node,
            &["list", "map", "ip", "keelson-proxy", "service-ips"],
        );
        if map.matches("goto svc-default/s").count() == SERVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every Service programmed\n{}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed();
    let syncs = metric(&node, "kubeproxy_sync_proxy_rules_duration_seconds_count") - syncs_before;
    let changes = metric(&node, "kubeproxy_sync_proxy_rules_endpoint_changes_total")
        + metric(&node, "kubeproxy_sync_proxy_rules_service_changes_total")
        - changes_before;
    println!(
        "{changes} changes over {elapsed:?} were applied in {syncs} syncs (min sync period 1 s)"
    );
    assert!(changes >= (2 * SERVICES) as f64, "{changes} changes seen");
    // One sync per second at most, plus the one the first change starts at once.
    assert!(
        syncs <= elapsed.as_secs_f64() + 2.0,
        "{syncs} syncs for {changes} changes in {elapsed:?}"
    );
    let table = nft(&node, &["list", "table", "ip", "keelson-proxy"]);
    assert!(
        table.contains("numgen random mod 2"),
        "two endpoints spread"
    );

    // Stopped, the proxy leaves its rules; --cleanup removes them.
    proxy.terminate(Duration::from_secs(10));
    assert!(nft(&node, &["list", "tables"]).contains("keelson-proxy"));
    let out = node
        .nsenter_command(binary("keelson-proxy").unwrap())
        .arg("--cleanup")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = nft(&node, &["list", "tables"]);
    assert!(
        !tables.contains("keelson-proxy") && !tables.contains("keelson-netpol"),
        "{tables}"
    );
}
