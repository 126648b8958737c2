//! NetworkPolicy on the two real nodes: keelson-proxy on each node enforces ingress at
//! the destination's node and egress at the source's (docs/network-policy.md). Every
//! selector kind, pods on both nodes (bridged traffic on one node, routed traffic
//! between them), Services (rules see the endpoint after DNAT), egress with DNS, a
//! default-deny namespace, and a removed policy giving connectivity back.
//!
//! A denied connection must fail by time-out (the policy drops; a refusal would be
//! something else). "Allowed" is polled with a deadline; "denied" is polled until the
//! policy is in effect on the node, then checked again. Before each policy the same
//! connections are checked allowed, so a denial is the policy's doing. Each scenario
//! works in namespaces of its own (the other tests share the cluster), and all of them
//! run at once in one test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keelson_e2e::net::{hostname_server_pod, kubectl, sleeper_pod};
use keelson_e2e::NODE_CLUSTER;
use keelson_testkit::node_cluster::CLUSTER_DNS;
use keelson_testkit::ok;
use serde_json::Value;

/// How long a probe expected to be denied waits: it fails after this.
const DENIED_PROBE_SECS: &str = "1";
/// How long a probe expected to pass may take (longer: the machine is busy, and a SYN
/// dropped just before a policy went is sent again after a second).
const ALLOWED_PROBE_SECS: &str = "2";
/// busybox `timeout`'s exit status when it had to kill the probe (128 + SIGTERM).
const TIMED_OUT: i32 = 143;
/// How long a change (a pod coming up, a policy being synced) may take to show.
const SETTLE: Duration = Duration::from_secs(30);
/// How long connectivity may take to come back after a policy is deleted: a sync is at
/// most a second after the change and a dropped SYN is sent again after a second; the
/// rest is room for kubectl exec on a busy machine (the figures are printed).
const RESTORE: Duration = Duration::from_secs(10);
/// Probes repeated once a connection is in its expected state under a policy.
const AGAIN: usize = 2;

fn node_name(i: usize) -> &'static str {
    NODE_CLUSTER.nodes[i].name()
}

/// The test's namespaces, deleted (without waiting) on every path.
struct Namespaces(Vec<String>);

impl Namespaces {
    /// Create namespaces, each with its labels (a YAML flow mapping).
    fn create(list: &[(&str, &str)]) -> Namespaces {
        let guard = Namespaces(list.iter().map(|(n, _)| n.to_string()).collect());
        let docs: Vec<String> = list
            .iter()
            .map(|(name, labels)| {
                format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n")
            })
            .collect();
        apply(list[0].0, &docs);
        guard
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = NODE_CLUSTER.kubectl(&["delete", "namespace", ns, "--wait=false"]);
        }
    }
}

/// A busybox httpd pod on node `node` serving its own name on 8080 (the container port
/// named `http`) and on each port of `more`.
fn server(name: &str, labels: &str, node: usize, more: &[u16]) -> String {
    hostname_server_pod(name, labels, node_name(node), more)
}

/// A busybox pod on node `node` that only sleeps: a client.
fn client(name: &str, labels: &str, node: usize) -> String {
    sleeper_pod(name, labels, node_name(node))
}

/// `kubectl apply` of several documents at once.
fn apply(ns: &str, docs: &[String]) {
    NODE_CLUSTER.apply(ns, &docs.join("---\n"));
}

/// A ClusterIP Service on port 80 to 8080 of the pods `selector` picks.
fn service(name: &str, selector: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n\
         spec: {{selector: {selector}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
    )
}

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

/// Wait until every pod of `ns` is Ready; then their addresses by name.
fn ready_pods(ns: &str) -> BTreeMap<String, String> {
    ok(NODE_CLUSTER.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "--all",
        "-n",
        ns,
        "--timeout=90s",
    ]));
    let out = kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("pods ({e}): {out}"));
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn cluster_ip(ns: &str, name: &str) -> String {
    kubectl(&[
        "get",
        "service",
        "-n",
        ns,
        name,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

/// What a probe does inside the client pod, and what its output must contain.
#[derive(Clone)]
struct Target {
    what: String,
    command: Vec<String>,
    /// The output contains one of these when the connection worked.
    answers: Vec<String>,
}

impl Target {
    /// `GET http://ip:port/`, answered by one of the pods `by` (pages are pod names).
    fn http(ip: &str, port: u16, by: &[&str]) -> Target {
        let url = format!("http://{ip}:{port}/");
        Target {
            what: url.clone(),
            command: vec!["wget".into(), "-qO-".into(), url],
            answers: by.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A DNS lookup of `name` at `server` (UDP) whose answer holds `address`.
    fn dns(name: &str, server: &str, address: &str) -> Target {
        Target {
            what: format!("DNS {name} at {server}"),
            command: vec!["nslookup".into(), name.into(), server.into()],
            answers: vec![format!("Address: {address}")],
        }
    }
}

/// The outcome of one probe.
struct Probe {
    worked: bool,
    timed_out: bool,
    output: String,
}

impl Probe {
    fn describe(&self) -> String {
        let how = if self.worked {
            "worked"
        } else if self.timed_out {
            "timed out"
        } else {
            "failed"
        };
        format!("{how}: {}", self.output.trim())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Allowed,
    Denied,
}

/// A connection from a pod to a target, and what must happen to it.
#[derive(Clone)]
struct Case {
    ns: String,
    from: String,
    to: Target,
    expect: Expect,
}

fn case(ns: &str, from: &str, to: &Target, expect: Expect) -> Case {
    Case {
        ns: ns.into(),
        from: from.into(),
        to: to.clone(),
        expect,
    }
}

impl Case {
    fn name(&self) -> String {
        format!("{}/{} -> {}", self.ns, self.from, self.to.what)
    }

    fn probe(&self) -> Probe {
        let secs = match self.expect {
            Expect::Allowed => ALLOWED_PROBE_SECS,
            Expect::Denied => DENIED_PROBE_SECS,
        };
        let mut args = vec!["exec", "-n", &self.ns, &self.from, "--", "timeout", secs];
        args.extend(self.to.command.iter().map(String::as_str));
        let out = NODE_CLUSTER.kubectl(&args);
        let output = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Probe {
            worked: out.status.success()
                && self.to.answers.iter().any(|a| output.contains(a.as_str())),
            // kubectl exec exits with the remote command's status.
            timed_out: out.status.code() == Some(TIMED_OUT),
            output,
        }
    }

    /// Poll until the connection is in the expected state within `deadline`, then check
    /// it stays there `again` more times. A denial must be a time-out.
    fn run(&self, deadline: Duration, again: usize) -> Result<Duration, String> {
        let started = Instant::now();
        let reached = |p: &Probe| match self.expect {
            Expect::Allowed => p.worked,
            Expect::Denied => p.timed_out,
        };
        loop {
            let p = self.probe();
            if reached(&p) {
                break;
            }
            if started.elapsed() > deadline {
                return Err(format!(
                    "{}: not {:?} within {deadline:?}; last {}",
                    self.name(),
                    self.expect,
                    p.describe()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let took = started.elapsed();
        for _ in 0..again {
            let p = self.probe();
            if !reached(&p) {
                return Err(format!(
                    "{}: {:?} once, then {}",
                    self.name(),
                    self.expect,
                    p.describe()
                ));
            }
        }
        Ok(took)
    }
}

/// Run every case at once (each polls on its own, and checks `again` more times once
/// there); panic with all failures, the proxies' logs and the nodes' policy tables.
/// Returns how long the first and the last case took to reach their state.
fn check(cases: &[Case], deadline: Duration, again: usize) -> (Duration, Duration) {
    let results: Vec<Result<Duration, String>> = std::thread::scope(|s| {
        let running: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(move || c.run(deadline, again)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a probe panicked".into())))
            .collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        diagnostics()
    );
    let took: Vec<Duration> = results.into_iter().filter_map(Result::ok).collect();
    (
        took.iter().min().copied().unwrap_or_default(),
        took.iter().max().copied().unwrap_or_default(),
    )
}

/// Poll every node's policy table until none mentions `needle` (a policy's
/// `namespace/name`, in its rules' comments); how long that took.
fn until_tables_drop(needle: &str, deadline: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let left: Vec<&str> = NODE_CLUSTER
            .nodes
            .iter()
            .filter(|n| {
                let out = n
                    .host
                    .nsenter_command("nft")
                    .args(["list", "table", "inet", "keelson-netpol"])
                    .output()
                    .expect("nft");
                String::from_utf8_lossy(&out.stdout).contains(needle)
            })
            .map(|n| n.name())
            .collect();
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{needle} still in the tables of {left:?} after {deadline:?}\n{}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same cases, all expected allowed: the state before a policy (or after it goes);
/// checked once each (`again` 0), since they only set the scene.
fn all_allowed(cases: &[Case]) -> Vec<Case> {
    cases
        .iter()
        .map(|c| Case {
            expect: Expect::Allowed,
            ..c.clone()
        })
        .collect()
}

fn diagnostics() -> String {
    NODE_CLUSTER
        .nodes
        .iter()
        .map(|n| {
            let table = n
                .host
                .nsenter_command("nft")
                .args(["list", "table", "inet", "keelson-netpol"])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr)
                })
                .unwrap_or_else(|e| e.to_string());
            format!(
                "--- proxy {0} ---\n{1}\n--- keelson-netpol on {0} ---\n{table}",
                n.name(),
                n.proxy.log_tail(20)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every scenario at once, each in namespaces of its own: the harness runs only as many
/// tests as there are cores, and a scenario spends most of its time waiting for pods
/// and for denied connections to time out.
#[test]
fn scenarios_on_two_nodes() {
    let scenarios: [(&str, fn()); 6] = [
        (
            "pod_selector_on_both_nodes_and_through_a_service_then_removed",
            pod_selector_on_both_nodes_and_through_a_service_then_removed,
        ),
        (
            "namespace_selector_alone_and_combined_with_a_pod_selector",
            namespace_selector_alone_and_combined_with_a_pod_selector,
        ),
        ("ip_block_with_except", ip_block_with_except),
        (
            "ports_with_protocol_end_port_and_a_named_port",
            ports_with_protocol_end_port_and_a_named_port,
        ),
        (
            "egress_to_a_named_port_then_dns_and_replies_pass",
            egress_to_a_named_port_then_dns_and_replies_pass,
        ),
        (
            "a_default_deny_namespace_then_same_namespace_allowed_then_removed",
            a_default_deny_namespace_then_same_namespace_allowed_then_removed,
        ),
    ];
    let started = Instant::now();
    std::sync::LazyLock::force(&NODE_CLUSTER);
    println!("netpol: cluster ready in {:?}", started.elapsed());
    let failed: Vec<&str> = std::thread::scope(|s| {
        let running: Vec<_> = scenarios
            .iter()
            .map(|(name, f)| {
                let t = std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn_scoped(s, move || {
                        let started = Instant::now();
                        f();
                        println!("netpol: {name} passed in {:?}", started.elapsed());
                    })
                    .expect("a scenario thread");
                (*name, t)
            })
            .collect();
        running
            .into_iter()
            .filter_map(|(name, t)| t.join().is_err().then_some(name))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed scenarios (their panics are printed above): {failed:?}"
    );
}

fn pod_selector_on_both_nodes_and_through_a_service_then_removed() {
    let ns = "netpol-pods";
    let _ns = Namespaces::create(&[(ns, "{}")]);
    apply(
        ns,
        &[
            server("web-0", "{app: web}", 0, &[]),
            server("web-1", "{app: web}", 1, &[]),
            client("front-0", "{role: frontend}", 0),
            client("front-1", "{role: frontend}", 1),
            client("other-0", "{role: other}", 0),
            client("other-1", "{role: other}", 1),
            service("web", "{app: web}"),
        ],
    );
    let ips = ready_pods(ns);
    let vip = cluster_ip(ns, "web");
    let web0 = Target::http(&ips["web-0"], 8080, &["web-0"]);
    let web1 = Target::http(&ips["web-1"], 8080, &["web-1"]);
    let svc = Target::http(&vip, 80, &["web-0", "web-1"]);
    use Expect::*;
    let cases = [
        case(ns, "front-0", &web0, Allowed), // same node: bridged
        case(ns, "front-0", &web1, Allowed), // across nodes: routed
        case(ns, "front-1", &web0, Allowed),
        case(ns, "front-0", &svc, Allowed), // after DNAT to either endpoint
        case(ns, "front-1", &svc, Allowed),
        case(ns, "other-0", &web0, Denied),
        case(ns, "other-0", &web1, Denied),
        case(ns, "other-1", &web0, Denied),
        case(ns, "other-1", &web1, Denied),
        case(ns, "other-0", &svc, Denied),
        case(ns, "other-1", &svc, Denied),
    ];
    check(&all_allowed(&cases), SETTLE, 0);

    apply(
        ns,
        &[policy(
            "web-from-frontend",
            "  podSelector: {matchLabels: {app: web}}\n  \
             ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]\n",
        )],
    );
    check(&cases, SETTLE, AGAIN);

    // The rules are gone from both nodes' tables (the proxy's part), and connections
    // pass again (the probes add kubectl exec's time, more on a busy machine).
    kubectl(&["delete", "networkpolicy", "-n", ns, "web-from-frontend"]);
    let synced = until_tables_drop("netpol-pods/web-from-frontend", RESTORE);
    let (first, last) = check(&all_allowed(&cases), RESTORE, 0);
    println!(
        "netpol: policy deleted: tables synced after {synced:?}, connections back after {:?} (first) to {:?} (last)",
        synced + first,
        synced + last
    );
}

fn namespace_selector_alone_and_combined_with_a_pod_selector() {
    let (srv, blue, red) = ("netpol-ns-server", "netpol-ns-blue", "netpol-ns-red");
    let _ns = Namespaces::create(&[(srv, "{}"), (blue, "{team: blue}"), (red, "{team: red}")]);
    apply(
        srv,
        &[
            server("by-ns", "{app: by-ns}", 0, &[]),
            server("by-both", "{app: by-both}", 1, &[]),
            client("client", "{role: client}", 1),
        ],
    );
    apply(
        blue,
        &[
            client("client", "{role: client}", 1),
            client("other", "{role: other}", 0),
        ],
    );
    apply(red, &[client("client", "{role: client}", 0)]);
    let ips = ready_pods(srv);
    ready_pods(blue);
    ready_pods(red);
    let by_ns = Target::http(&ips["by-ns"], 8080, &["by-ns"]);
    let by_both = Target::http(&ips["by-both"], 8080, &["by-both"]);
    use Expect::*;
    let cases = [
        // from: namespaceSelector team=blue: any pod of a blue namespace.
        case(blue, "client", &by_ns, Allowed),
        case(blue, "other", &by_ns, Allowed),
        case(red, "client", &by_ns, Denied),
        case(srv, "client", &by_ns, Denied), // its own namespace is not blue
        // from: namespaceSelector team=blue AND podSelector role=client (one peer).
        case(blue, "client", &by_both, Allowed),
        case(blue, "other", &by_both, Denied),
        case(red, "client", &by_both, Denied),
        case(srv, "client", &by_both, Denied),
    ];
    check(&all_allowed(&cases), SETTLE, 0);

    apply(
        srv,
        &[
            policy(
                "by-namespace",
                "  podSelector: {matchLabels: {app: by-ns}}\n  \
                 ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]\n",
            ),
            policy(
                "by-namespace-and-pod",
                "  podSelector: {matchLabels: {app: by-both}}\n  \
                 ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, \
                 podSelector: {matchLabels: {role: client}}}]}]\n",
            ),
        ],
    );
    check(&cases, SETTLE, AGAIN);

    // Relabelling a namespace changes what its pods may reach.
    kubectl(&["label", "namespace", red, "team=blue", "--overwrite"]);
    check(
        &[
            case(red, "client", &by_ns, Allowed),
            case(red, "client", &by_both, Allowed),
            case(blue, "other", &by_both, Denied),
        ],
        SETTLE,
        AGAIN,
    );
}

fn ip_block_with_except() {
    let ns = "netpol-ipblock";
    let _ns = Namespaces::create(&[(ns, "{}")]);
    apply(
        ns,
        &[
            server("web", "{app: web}", 0, &[]),
            client("near", "{role: client}", 0),
            client("excepted", "{role: client}", 0),
            client("far", "{role: client}", 1),
        ],
    );
    let ips = ready_pods(ns);
    let node0_pods = kubectl(&[
        "get",
        "node",
        node_name(0),
        "-o",
        "jsonpath={.spec.podCIDR}",
    ]);
    let web = Target::http(&ips["web"], 8080, &["web"]);
    use Expect::*;
    let cases = [
        case(ns, "near", &web, Allowed),
        case(ns, "excepted", &web, Denied), // inside the block, in its except
        case(ns, "far", &web, Denied),      // node 1's pods are outside the block
    ];
    check(&all_allowed(&cases), SETTLE, 0);

    apply(
        ns,
        &[policy(
            "from-node-0-pods",
            &format!(
                "  podSelector: {{matchLabels: {{app: web}}}}\n  \
                 ingress: [{{from: [{{ipBlock: {{cidr: \"{node0_pods}\", except: [\"{}/32\"]}}}}]}}]\n",
                ips["excepted"]
            ),
        )],
    );
    check(&cases, SETTLE, AGAIN);
}

fn ports_with_protocol_end_port_and_a_named_port() {
    let ns = "netpol-ports";
    let _ns = Namespaces::create(&[(ns, "{}")]);
    apply(
        ns,
        &[
            server("web", "{app: web}", 1, &[8081, 8082, 8083, 9090]),
            client("client-0", "{role: client}", 0),
            client("client-1", "{role: client}", 1),
        ],
    );
    let ips = ready_pods(ns);
    let port = |p: u16| Target::http(&ips["web"], p, &["web"]);
    use Expect::*;
    let mut cases = Vec::new();
    for from in ["client-0", "client-1"] {
        cases.extend([
            case(ns, from, &port(8080), Allowed), // the named port `http`
            case(ns, from, &port(8081), Allowed), // 8081..8082
            case(ns, from, &port(8082), Allowed),
            case(ns, from, &port(8083), Denied), // past endPort
            case(ns, from, &port(9090), Denied), // allowed for UDP only
        ]);
    }
    check(&all_allowed(&cases), SETTLE, 0);

    apply(
        ns,
        &[policy(
            "some-ports",
            "  podSelector: {matchLabels: {app: web}}\n  \
             ingress:\n  - ports:\n    - {port: http}\n    \
             - {protocol: TCP, port: 8081, endPort: 8082}\n    \
             - {protocol: UDP, port: 9090}\n",
        )],
    );
    check(&cases, SETTLE, AGAIN);
}

fn egress_to_a_named_port_then_dns_and_replies_pass() {
    let ns = "netpol-egress";
    let _ns = Namespaces::create(&[(ns, "{}")]);
    apply(
        ns,
        &[
            server("web", "{app: web}", 1, &[]),
            server("other", "{app: other}", 0, &[]),
            client("locked", "{role: locked}", 0),
            client("free", "{role: free}", 1),
            service("web", "{app: web}"),
            service("other", "{app: other}"),
        ],
    );
    let ips = ready_pods(ns);
    let web_vip = cluster_ip(ns, "web");
    let web = Target::http(&ips["web"], 8080, &["web"]);
    let web_svc = Target::http(&web_vip, 80, &["web"]);
    let other = Target::http(&ips["other"], 8080, &["other"]);
    let other_svc = Target::http(&cluster_ip(ns, "other"), 80, &["other"]);
    let web_name = format!("web.{ns}.svc.cluster.local");
    let dns = Target::dns(&web_name, CLUSTER_DNS, &web_vip);
    use Expect::*;
    let cases = [
        case(ns, "locked", &web, Allowed), // the named port, resolved on web
        case(ns, "locked", &web_svc, Allowed), // the ClusterIP is not named: DNAT first
        case(ns, "locked", &other, Denied), // same node, bridged
        case(ns, "locked", &other_svc, Denied),
        case(ns, "locked", &dns, Denied), // DNS needs an allow of its own
        case(ns, "free", &web, Allowed),  // web's replies pass its egress deny
        case(ns, "web", &other, Denied),  // but web starts nothing
    ];
    check(&all_allowed(&cases), SETTLE, 0);

    apply(
        ns,
        &[
            policy(
                "locked-to-web",
                "  podSelector: {matchLabels: {role: locked}}\n  policyTypes: [Egress]\n  \
                 egress: [{to: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n",
            ),
            policy(
                "web-starts-nothing",
                "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n",
            ),
            // Not enough for DNS: rules see the address after DNAT, a node's.
            policy(
                "locked-to-the-dns-service-ip",
                &format!(
                    "  podSelector: {{matchLabels: {{role: locked}}}}\n  policyTypes: [Egress]\n  \
                     egress: [{{to: [{{ipBlock: {{cidr: {CLUSTER_DNS}/32}}}}], \
                     ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]}}]\n"
                ),
            ),
        ],
    );
    check(&cases, SETTLE, AGAIN);

    // keelson-dns answers on the nodes' own addresses: 10.96.0.10 is DNATed to one of
    // them, so the allow names the node network (UDP and TCP 53).
    let nodes = NODE_CLUSTER.network.cidr();
    apply(
        ns,
        &[policy(
            "locked-dns",
            &format!(
                "  podSelector: {{matchLabels: {{role: locked}}}}\n  policyTypes: [Egress]\n  \
                 egress: [{{to: [{{ipBlock: {{cidr: \"{nodes}\"}}}}], \
                 ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]}}]\n"
            ),
        )],
    );
    let mut after = vec![
        case(ns, "locked", &dns, Allowed),
        case(
            ns,
            "locked",
            &Target::http(&format!("web.{ns}"), 80, &["web"]),
            Allowed,
        ),
        case(ns, "locked", &other, Denied),
    ];
    // Either node's server, whichever the Service picks: its own (input hook) and the
    // other (forward hook).
    for n in &NODE_CLUSTER.nodes {
        after.push(case(
            ns,
            "locked",
            &Target::dns(&web_name, &n.host.ip.to_string(), &web_vip),
            Allowed,
        ));
    }
    check(&after, SETTLE, AGAIN);
}

fn a_default_deny_namespace_then_same_namespace_allowed_then_removed() {
    let (ns, outside) = ("netpol-deny", "netpol-deny-outside");
    let _ns = Namespaces::create(&[(ns, "{}"), (outside, "{}")]);
    apply(
        ns,
        &[
            server("a", "{app: a}", 0, &[]),
            server("b", "{app: b}", 1, &[]),
            server("c", "{app: c}", 0, &[]),
        ],
    );
    apply(outside, &[client("client", "{role: client}", 1)]);
    let ips = ready_pods(ns);
    ready_pods(outside);
    let to = |p: &str| Target::http(&ips[p], 8080, &[p]);
    let dns = Target::dns(
        "kubernetes.default.svc.cluster.local",
        CLUSTER_DNS,
        "10.96.0.1",
    );
    use Expect::*;
    let denied = [
        case(ns, "a", &to("c"), Denied), // same node
        case(ns, "a", &to("b"), Denied), // across nodes
        case(ns, "b", &to("a"), Denied),
        case(outside, "client", &to("a"), Denied),
        case(outside, "client", &to("b"), Denied),
        case(ns, "a", &dns, Denied),
    ];
    check(&all_allowed(&denied), SETTLE, 0);

    apply(
        ns,
        &[policy(
            "default-deny",
            "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
        )],
    );
    check(&denied, SETTLE, AGAIN);

    // Every pod of the namespace may talk to every other; nothing else changes.
    apply(
        ns,
        &[policy(
            "same-namespace",
            "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  \
             ingress: [{from: [{podSelector: {}}]}]\n  egress: [{to: [{podSelector: {}}]}]\n",
        )],
    );
    check(
        &[
            case(ns, "a", &to("c"), Allowed),
            case(ns, "a", &to("b"), Allowed),
            case(ns, "b", &to("a"), Allowed),
            case(outside, "client", &to("a"), Denied),
            case(ns, "a", &dns, Denied),
        ],
        SETTLE,
        AGAIN,
    );

    kubectl(&[
        "delete",
        "networkpolicy",
        "-n",
        ns,
        "default-deny",
        "same-namespace",
    ]);
    let (first, last) = check(&all_allowed(&denied), RESTORE, 0);
    println!(
        "netpol: default deny deleted: connections back after {first:?} (first) to {last:?} (last)"
    );
}
