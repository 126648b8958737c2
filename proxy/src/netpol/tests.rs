//! Semantics on the model, the printed text, and the text loaded by the real nft into a
//! network namespace of the test's own (never the host's ruleset).

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};

use super::model::{compute, Allow, Model, Ports, Protocol};
use super::render;

const NODE: &str = "node-a";

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
        ]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

fn ns(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// web (local, ns a), client (local, ns a), other (remote, ns b), remote-web (remote, ns a).
fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    (
        vec![
            pod("a", "web", NODE, "10.244.1.10", json!({"app": "web"})),
            pod("a", "client", NODE, "10.244.1.11", json!({"app": "client"})),
            pod(
                "b",
                "other",
                "node-b",
                "10.244.2.20",
                json!({"app": "client"}),
            ),
            pod(
                "a",
                "remote-web",
                "node-b",
                "10.244.2.21",
                json!({"app": "web"}),
            ),
        ],
        vec![ns("a", json!({"team": "a"})), ns("b", json!({"team": "b"}))],
    )
}

fn model(policies: &[NetworkPolicy]) -> Model {
    let (pods, namespaces) = cluster();
    compute(NODE, &pods, &namespaces, policies)
}

/// The addresses a peer set holds, as text ranges.
fn peers(m: &Model, allow: &Allow) -> Option<Vec<String>> {
    let Allow::Peers { peers, .. } = allow else {
        panic!("not a peers rule: {allow:?}")
    };
    peers.map(|id| {
        m.address_sets[id]
            .v4
            .iter()
            .map(|(lo, hi)| {
                let (lo, hi) = (std::net::Ipv4Addr::from(*lo), std::net::Ipv4Addr::from(*hi));
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect()
    })
}

fn local<'a>(m: &'a Model, key: &str) -> &'a super::model::LocalPod {
    m.pods
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("{key} not isolated: {m:?}"))
}

#[test]
fn no_policy_isolates_nothing() {
    assert!(model(&[]).pods.is_empty());
}

#[test]
fn empty_ingress_list_is_default_deny_for_selected_local_pods_only() {
    let m = model(&[policy(
        "a",
        "deny",
        json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    )]);
    assert_eq!(m.pods.len(), 1, "{m:?}");
    let web = local(&m, "a/web");
    assert_eq!(web.ingress.as_deref(), Some(&[][..]));
    assert_eq!(
        web.egress, None,
        "no egress rules and no policyTypes: Ingress only"
    );
}

#[test]
fn empty_pod_selector_selects_every_pod_of_the_namespace() {
    let m = model(&[policy(
        "a",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )]);
    let keys: Vec<&str> = m.pods.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["a/client", "a/web"]);
    assert!(m.pods.iter().all(|p| p.egress.as_deref() == Some(&[][..])));
}

#[test]
fn pod_selector_peer_is_the_policys_namespace_only() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    )]);
    let web = local(&m, "a/web");
    let rules = web.ingress.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    // b/other has app=client too, but sits in another namespace.
    assert_eq!(peers(&m, &rules[0]).unwrap(), ["10.244.1.11"]);
}

#[test]
fn namespace_selector_alone_and_combined_with_pod_selector() {
    let m = model(&[
        policy(
            "a",
            "ns-only",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
        ),
        policy(
            "a",
            "both",
            json!({"podSelector": {"matchLabels": {"app": "client"}},
                   "ingress": [{"from": [{"namespaceSelector": {},
                                          "podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        ),
    ]);
    let web = local(&m, "a/web");
    assert_eq!(
        peers(&m, &web.ingress.as_ref().unwrap()[0]).unwrap(),
        ["10.244.2.20"]
    );
    let client = local(&m, "a/client");
    // app=web in every namespace: a/web and a/remote-web on the other node.
    assert_eq!(
        peers(&m, &client.ingress.as_ref().unwrap()[0]).unwrap(),
        ["10.244.1.10", "10.244.2.21"]
    );
}

#[test]
fn namespace_name_label_is_assumed_when_missing() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
                   {"kubernetes.io/metadata.name": "b"}}}]}]}),
    )]);
    let web = local(&m, "a/web");
    assert_eq!(
        peers(&m, &web.ingress.as_ref().unwrap()[0]).unwrap(),
        ["10.244.2.20"]
    );
}

#[test]
fn ip_block_except_cuts_holes() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24",
                                                   "except": ["10.0.0.128/26", "10.0.0.5/32"]}}]}]}),
    )]);
    let web = local(&m, "a/web");
    assert_eq!(
        peers(&m, &web.ingress.as_ref().unwrap()[0]).unwrap(),
        [
            "10.0.0.0-10.0.0.4",
            "10.0.0.6-10.0.0.127",
            "10.0.0.192-10.0.0.255"
        ]
    );
    // Both local pods share one set.
    assert_eq!(m.address_sets.len(), 1);
}

#[test]
fn invalid_ip_block_allows_nothing() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]},
                           {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nonsense"]}}]}]}),
    )]);
    assert_eq!(local(&m, "a/web").ingress.as_deref(), Some(&[][..]));
}

#[test]
fn ports_protocols_end_port_and_named_ports_on_the_selected_pod() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [
            {"port": 80},
            {"port": 8000, "endPort": 8010},
            {"port": "http"},
            {"port": "dns", "protocol": "UDP"},
            {"port": "missing"},
            {"protocol": "SCTP"}
        ]}]}),
    )]);
    let rules = local(&m, "a/web").ingress.clone().unwrap();
    let Allow::Peers {
        peers: None,
        ports: Ports::Numeric(p),
        ..
    } = &rules[0]
    else {
        panic!("{rules:?}")
    };
    assert_eq!(p[&Protocol::Tcp], [(80, 80), (8000, 8010), (8080, 8080)]);
    assert_eq!(p[&Protocol::Udp], [(5353, 5353)]);
    assert_eq!(p[&Protocol::Sctp], []);
}

#[test]
fn a_rule_whose_ports_cannot_match_allows_nothing() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"ports": [{"port": "missing"}, {"port": 90, "endPort": 80},
                                      {"port": 80, "protocol": "ICMP"}]}]}),
    )]);
    assert_eq!(local(&m, "a/web").ingress.as_deref(), Some(&[][..]));
}

#[test]
fn egress_named_ports_resolve_on_the_destination_pods() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "client"}},
               "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                           "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]}]}),
    )]);
    let client = local(&m, "a/client");
    assert_eq!(client.ingress, None);
    let rules = client.egress.as_ref().unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let Allow::NamedPorts { set, .. } = &rules[0] else {
        panic!("{rules:?}")
    };
    let targets: Vec<_> = m.named_port_sets[*set]
        .v4
        .iter()
        .map(|(a, p, lo, _)| (std::net::Ipv4Addr::from(*a).to_string(), *p, *lo))
        .collect();
    assert_eq!(
        targets,
        [
            ("10.244.1.10".to_string(), Protocol::Tcp, 8080),
            ("10.244.2.21".to_string(), Protocol::Tcp, 8080)
        ]
    );
    assert_eq!(
        peers(&m, &rules[1]).unwrap(),
        ["10.244.1.10", "10.244.2.21"]
    );
}

#[test]
fn egress_rules_imply_the_egress_type_and_dns_is_not_special() {
    let m = model(&[policy(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"app": "client"}},
               "egress": [{"to": [{"ipBlock": {"cidr": "10.244.2.0/24"}}]}]}),
    )]);
    let client = local(&m, "a/client");
    assert_eq!(
        client.ingress.as_deref(),
        Some(&[][..]),
        "Ingress is always implied"
    );
    assert_eq!(
        peers(&m, &client.egress.as_ref().unwrap()[0]).unwrap(),
        ["10.244.2.0-10.244.2.255"]
    );
}

#[test]
fn host_network_finished_and_addressless_pods_are_ignored() {
    let mut host = pod("a", "host", NODE, "192.168.1.1", json!({"app": "web"}));
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod("a", "done", NODE, "10.244.1.50", json!({"app": "web"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut pending = pod("a", "pending", NODE, "", json!({"app": "web"}));
    pending.status.as_mut().unwrap().pod_ips = None;
    let pods = [host, done, pending];
    let m = compute(
        NODE,
        &pods,
        &[ns("a", json!({}))],
        &[policy("a", "p", json!({"podSelector": {}}))],
    );
    assert!(m.pods.is_empty(), "{m:?}");
}

#[test]
fn rendering_does_not_depend_on_input_order() {
    let (mut pods, namespaces) = cluster();
    let policies = [
        policy(
            "a",
            "p1",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
        ),
        policy(
            "a",
            "p2",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        ),
    ];
    let one = super::render(NODE, &pods, &namespaces, &policies);
    pods.reverse();
    let mut reversed = policies.to_vec();
    reversed.reverse();
    assert_eq!(one, super::render(NODE, &pods, &namespaces, &reversed));
}

#[test]
fn rendered_text_maps_pods_to_chains_and_ends_chains_with_drop() {
    let (pods, namespaces) = cluster();
    let text = super::render(
        NODE,
        &pods,
        &namespaces,
        &[policy(
            "a",
            "p",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                "ports": [{"port": 80}, {"port": 8000, "endPort": 8010}]}]}),
        )],
    );
    assert!(text.contains("10.244.1.10 : jump ingress-0"), "{text}");
    assert!(text.contains("10.244.1.10 : jump egress-0"), "{text}");
    assert!(
        text.contains("ip saddr @peers-0-v4 meta l4proto tcp th dport { 80, 8000-8010 } return"),
        "{text}"
    );
    assert!(text.contains("elements = { 10.244.1.11 }"), "{text}");
    assert_eq!(text.matches("counter drop").count(), 2, "{text}");
    assert!(
        !text.contains("10.244.1.11 : jump"),
        "client is not selected: {text}"
    );
}

use crate::test_netns::Netns;

/// Every construct the renderer emits, loaded by the real nft twice (the second load
/// replaces the first in one transaction), and an empty model too.
#[test]
fn the_real_nft_loads_the_rendered_table_and_replaces_it() {
    let (mut pods, namespaces) = cluster();
    pods.push(
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "dual", "labels": {"app": "web"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "i",
                      "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.12",
                       "podIPs": [{"ip": "10.244.1.12"}, {"ip": "fd00:10:244:1::12"}]}
        }))
        .unwrap(),
    );
    let policies = [
        policy(
            "a",
            "in",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "client"}}},
                          {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                          {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
                          {"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:1::/32"]}}],
                 "ports": [{"port": 80}, {"port": 8000, "endPort": 8010}, {"port": "http"},
                           {"protocol": "UDP"}, {"port": 9, "protocol": "SCTP"}]},
                {}
            ]}),
        ),
        policy(
            "a",
            "out",
            json!({"podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]},
                {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}
            ]}),
        ),
    ];
    let text = super::render(NODE, &pods, &namespaces, &policies);
    let ns = Netns::new("load");
    let (ok, out) = ns.nft(&["-f", "-"], &render::transaction(&text));
    assert!(ok, "nft refused:\n{out}\n{text}");
    let (ok, again) = ns.nft(&["-f", "-"], &render::transaction(&text));
    assert!(ok, "second load: {again}");
    let (ok, listed) = ns.nft(&["list", "table", "inet", render::TABLE], "");
    assert!(ok, "{listed}");
    for want in [
        "set peers-0-v4",
        "set named-0-v4",
        "ip6 saddr @peers-",
        "fd00:10:244:1::12 : jump ingress-",
        "10.244.1.12 : jump egress-",
        "192.168.0.0/24, 192.168.2.0-192.168.255.255",
        "sctp dport 9",
        "hook forward",
        "hook input",
    ] {
        assert!(listed.contains(want), "{want} missing from:\n{listed}");
    }
    // a/web and a/dual have the same rules: one chain serves both.
    assert!(
        listed.contains("10.244.1.10 : jump ingress-0, 10.244.1.12 : jump ingress-0"),
        "{listed}"
    );
    assert!(!listed.contains("chain ingress-1"), "{listed}");
    // One table, not two: the transaction replaced it.
    let (_, tables) = ns.nft(&["list", "tables"], "");
    assert_eq!(tables.matches(render::TABLE).count(), 1, "{tables}");

    let empty = super::render::<Pod, Namespace, NetworkPolicy>(NODE, &[], &[], &[]);
    let (ok, out) = ns.nft(&["-f", "-"], &render::transaction(&empty));
    assert!(ok, "{out}\n{empty}");
    let (_, listed) = ns.nft(&["list", "table", "inet", render::TABLE], "");
    assert!(!listed.contains("jump"), "{listed}");
}

/// A process the test started, killed and reaped by its pid on every path.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node of network namespaces: a bridge in `node` and a veth from it into each pod's
/// namespace; no default route anywhere, so nothing can leave.
struct Bridge {
    node: Netns,
    pods: Vec<(Netns, String)>,
}

impl Bridge {
    fn new(pod_ips: &[&str]) -> Bridge {
        let node = Netns::new("node");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["-n", &node.0, "link", "add", "br0", "type", "bridge"]);
        run(&["-n", &node.0, "addr", "add", "10.99.0.1/24", "dev", "br0"]);
        run(&["-n", &node.0, "link", "set", "br0", "up"]);
        let mut pods = Vec::new();
        for (i, ip) in pod_ips.iter().enumerate() {
            let pod = Netns::new(&format!("pod{i}"));
            let veth = format!("veth{i}");
            run(&[
                "-n", &node.0, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &pod.0,
            ]);
            run(&["-n", &node.0, "link", "set", &veth, "master", "br0", "up"]);
            run(&[
                "-n",
                &pod.0,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            run(&["-n", &pod.0, "link", "set", "eth0", "up"]);
            run(&["-n", &pod.0, "link", "set", "lo", "up"]);
            pods.push((pod, ip.to_string()));
        }
        Bridge { node, pods }
    }

    /// busybox httpd on `port` in pod `i`, answering its own address.
    fn serve(&self, i: usize, port: u16, dir: &std::path::Path) -> Started {
        let (ns, ip) = &self.pods[i];
        let root = dir.join(format!("{i}-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), format!("{ip}:{port}\n")).unwrap();
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "busybox",
                "httpd",
                "-f",
                "-p",
                &port.to_string(),
                "-h",
            ])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Started(child)
    }

    /// Whether an HTTP GET from `from` (a pod index, or `None` for the node) gets the
    /// page; busybox nc gives up after a second (busybox wget's -T crashes here).
    fn reaches(&self, from: Option<usize>, to: usize, port: u16) -> bool {
        use std::io::Write;
        let ns = match from {
            Some(i) => &self.pods[i].0 .0,
            None => &self.node.0,
        };
        let target = &self.pods[to].1;
        let mut child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "busybox",
                "nc",
                "-w",
                "1",
                target,
                &port.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n");
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{target}:{port}\n"))
    }
}

/// The rendered table enforces in the kernel: bridged pod-to-pod traffic through
/// br_netfilter's forward hook, replies of allowed connections, node-originated probes.
#[test]
fn the_kernel_enforces_the_rendered_table_between_pods_on_one_bridge() {
    let ips = ["10.99.0.2", "10.99.0.3", "10.99.0.4"];
    let bridge = Bridge::new(&ips);
    let pods = vec![
        pod("a", "web", NODE, ips[0], json!({"app": "web"})),
        pod("a", "client", NODE, ips[1], json!({"app": "client"})),
        pod("b", "other", NODE, ips[2], json!({"app": "client"})),
    ];
    let namespaces = vec![ns("a", json!({})), ns("b", json!({}))];
    let dir = std::env::temp_dir().join(format!("keelson-np-www-{}", std::process::id()));
    let _servers: Vec<Started> = (0..3)
        .flat_map(|i| [bridge.serve(i, 8080, &dir), bridge.serve(i, 9090, &dir)])
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        bridge.reaches(Some(1), 0, 9090),
        "no policy: everything passes"
    );
    assert!(
        bridge.reaches(Some(2), 0, 8080),
        "no policy: everything passes"
    );

    let load = |policies: &[NetworkPolicy]| {
        let text = super::render(NODE, &pods, &namespaces, policies);
        let (ok, out) = bridge.node.nft(&["-f", "-"], &render::transaction(&text));
        assert!(ok, "{out}\n{text}");
    };
    // web: ingress from app=client of its own namespace on its named port "http" (8080);
    // egress denied entirely, so its replies pass only as replies.
    load(&[policy(
        "a",
        "web",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": "http"}]}]}),
    )]);
    assert!(
        bridge.reaches(Some(1), 0, 8080),
        "allowed, and the reply passes web's egress deny"
    );
    assert!(!bridge.reaches(Some(1), 0, 9090), "port not allowed");
    assert!(
        !bridge.reaches(Some(2), 0, 8080),
        "app=client of another namespace"
    );
    assert!(!bridge.reaches(Some(0), 1, 8080), "web's egress is denied");
    assert!(bridge.reaches(Some(2), 1, 8080), "client is not selected");
    assert!(
        bridge.reaches(None, 0, 9090),
        "the node itself (probes) always reaches its pods"
    );

    // Replaced in one transaction: ipBlock with except, and an endPort range.
    load(&[policy(
        "a",
        "web",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.99.0.0/24", "except": ["10.99.0.3/32"]}}],
                            "ports": [{"port": 9000, "endPort": 9100}]}]}),
    )]);
    assert!(
        bridge.reaches(Some(2), 0, 9090),
        "inside the block and the range"
    );
    assert!(!bridge.reaches(Some(2), 0, 8080), "outside the port range");
    assert!(!bridge.reaches(Some(1), 0, 9090), "in the except");
    assert!(
        bridge.reaches(Some(0), 1, 8080),
        "web's egress is no longer isolated"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The controller against a real apiserver: informers, a table that follows policy
/// changes, bursts coalesced into few loads, no load when the text is unchanged, and the
/// table left in place at shutdown. nft runs in a namespace of the test's own, through
/// a wrapper that counts loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_follows_the_api_and_coalesces_changes() {
    use keelson_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
    use std::time::{Duration, Instant};

    let cluster = tokio::task::spawn_blocking(keelson_testkit::Cluster::start)
        .await
        .unwrap()
        .expect("starting the test cluster (cargo build -p keelson-apiserver first)");
    let client = Client::from_kubeconfig(&cluster.kubeconfig).expect("client");
    let netns = Netns::new("ctl");
    let loads = cluster.dir.path().join("nft-loads");
    let nft = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "echo load >> {}; exec ip netns exec {} nft \"$@\"",
            loads.display(),
            netns.0
        ),
        "nft".to_string(),
    ];
    let count_loads = || {
        std::fs::read_to_string(&loads)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let list = || netns.nft(&["list", "table", "inet", render::TABLE], "").1;
    let wait_for = |what: &str, f: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = list();
            if f(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &ns("np-it", json!({"team": "it"})))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "np-it");
    for (name, ip, app) in [
        ("web", "10.99.0.2", "web"),
        ("client", "10.99.0.3", "client"),
    ] {
        let mut p = pod("np-it", name, NODE, ip, json!({"app": app}));
        let status = p.status.take();
        pods.create(&PostParams::default(), &p).await.unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(super::sync_loop(client.clone(), NODE.into(), nft, async {
        let _ = stopped.await;
    }));
    let text = tokio::task::block_in_place(|| {
        wait_for("the first table", &|t| t.contains("chain forward"))
    });
    assert!(!text.contains("jump"), "no policy yet: {text}");

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "np-it");
    let deny = policy(
        "np-it",
        "deny",
        json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    );
    policies
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_for("web isolated", &|t| {
            t.contains("10.99.0.2 : jump ingress-0")
        })
    });

    // A burst of 30 policies is a handful of loads, not 30.
    let before = count_loads();
    for i in 0..30 {
        let p = policy(
            "np-it",
            &format!("allow-{i}"),
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"ports": [{"port": 1000 + i}]}]}),
        );
        policies.create(&PostParams::default(), &p).await.unwrap();
    }
    tokio::task::block_in_place(|| wait_for("all 30 allows", &|t| t.contains("1029")));
    let burst = count_loads() - before;
    assert!((1..=6).contains(&burst), "30 creates took {burst} loads");

    // A change that does not change the text (a label nobody selects on) loads nothing.
    let before = count_loads();
    pods.patch(
        "client",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"unrelated": "x"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        count_loads(),
        before,
        "unchanged text must not be loaded again"
    );

    // The client becomes a peer of a new rule: the set follows the pod's labels.
    let from_client = policy(
        "np-it",
        "from-client",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"unrelated": "x"}}}]}]}),
    );
    policies
        .create(&PostParams::default(), &from_client)
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_for("the client as a peer", &|t| {
            t.contains("elements = { 10.99.0.3 }")
        })
    });

    // Deleting every policy ends the isolation.
    for p in policies.list(&Default::default()).await.unwrap() {
        let name = p.metadata.name.clone().unwrap_or_default();
        policies
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }
    tokio::task::block_in_place(|| {
        wait_for("no isolation", &|t| {
            t.contains("chain forward") && !t.contains("jump")
        })
    });

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run ends at shutdown")
        .unwrap()
        .unwrap();
    assert!(
        list().contains("chain forward"),
        "the table stays after shutdown"
    );
}

/// A deleted pod whose object outlives its sandbox must not keep isolating the new pod
/// that got its address.
#[test]
fn a_reused_address_belongs_to_the_pod_that_is_not_terminating() {
    let mut old = pod("ns1", "old", "n1", "10.244.1.50", json!({"app": "locked"}));
    old.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
    let new = pod("ns2", "new", "n1", "10.244.1.50", json!({"app": "free"}));
    let deny = policy(
        "ns1",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let namespaces = vec![ns("ns1", json!({})), ns("ns2", json!({}))];
    let m = super::model::compute(
        "n1",
        &[old.clone(), new.clone()],
        &namespaces,
        std::slice::from_ref(&deny),
    );
    assert!(
        m.pods
            .iter()
            .all(|p| !p.ips.contains(&"10.244.1.50".parse().unwrap())),
        "the address is not isolated: {:?}",
        m.pods.iter().map(|p| &p.key).collect::<Vec<_>>()
    );
    // Without the new pod, the terminating one is still isolated.
    let m = super::model::compute("n1", &[old], &namespaces, &[deny]);
    assert_eq!(m.pods.len(), 1);
}
