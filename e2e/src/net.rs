//! What the network e2e tests (Services, DNS, NetworkPolicy, mirroring) share on the
//! two-node cluster: busybox pods that serve their name or sleep, requests from inside a
//! pod, and polling that reports the proxies' logs when it gives up.

use std::time::{Duration, Instant};

use keelson_testkit::ok;
use serde_json::Value;

use crate::NODE_CLUSTER;

/// `kubectl ARGS` on the two-node cluster; its stdout (panics when it fails).
pub fn kubectl(args: &[&str]) -> String {
    ok(NODE_CLUSTER.kubectl(args))
}

/// `kubectl ARGS -o json`, parsed.
pub fn get_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = kubectl(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The tail of every node's proxy log.
pub fn proxy_logs() -> String {
    NODE_CLUSTER
        .nodes
        .iter()
        .map(|n| format!("--- proxy {} ---\n{}", n.name(), n.proxy.log_tail(30)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the nodes' kernels hold for traffic to `address`, for failure messages: the
/// announced addresses, the conntrack entries towards it, and the NetworkPolicy maps.
pub fn network_diagnostics(address: &str) -> String {
    let mut out = String::new();
    for n in &NODE_CLUSTER.nodes {
        let run = |program: &str, args: &[&str]| {
            let o = n.host.nsenter_command(program).args(args).output();
            o.map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_else(|e| e.to_string())
        };
        let netpol = run("nft", &["list", "table", "inet", "keelson-netpol"]);
        let maps: Vec<&str> = netpol
            .lines()
            .filter(|l| l.contains(" : "))
            .take(20)
            .collect();
        out.push_str(&format!(
            "--- node {} ---
keelson-lb0: {}
conntrack to {address}:
{}
netpol map entries:
{}
",
            n.name(),
            run("ip", &["-4", "-br", "addr", "show", "dev", "keelson-lb0"]).trim(),
            run("conntrack", &["-L", "--orig-dst", address]),
            maps.join("\n"),
        ));
    }
    out
}

/// Poll `f` every 250 ms until it succeeds; on time-out panic with what it last said
/// and the proxies' logs.
pub fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("{what}: timed out; last: {last}\n{}", proxy_logs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A busybox pod on `node` (a node name) that sleeps: a client. `labels` is a YAML
/// flow mapping (`{role: client}`).
pub fn sleeper_pod(name: &str, labels: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
"#
    )
}

/// A busybox httpd pod on `node` serving its own name on 8080 (the container port
/// named `http`, with a readiness probe) and on each port of `more`. busybox httpd as
/// PID 1 ignores SIGTERM, so a deleted pod keeps serving through its grace period.
pub fn hostname_server_pod(name: &str, labels: &str, node: &str, more: &[u16]) -> String {
    let extra: String = more
        .iter()
        .map(|p| format!("httpd -p {p} -h /www && "))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: keelson.local/busybox:1
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && {extra}exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080, name: http}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// `timeout 5 wget -qO- URL` inside a pod: (succeeded, stdout + stderr).
pub fn wget_in_pod(ns: &str, pod: &str, url: &str) -> (bool, String) {
    let out = NODE_CLUSTER.kubectl(&[
        "exec", "-n", ns, pod, "--", "timeout", "5", "wget", "-qO-", url,
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
