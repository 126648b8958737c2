//! The proxy's nftables table, as kube-proxy's nftables mode lays it out: Service
//! destinations are looked up in verdict maps (`ip daddr . meta l4proto . th dport`)
//! that jump to one chain per Service port, which picks an endpoint chain at random
//! with equal weight; the endpoint chain DNATs. [`render`] builds the whole table as
//! data ([`Ruleset`]) from the Service ports; [`Ruleset::full`] and [`Ruleset::diff`]
//! turn it into one `nft -f` transaction, so the kernel never sees half a sync.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, ServicePort};

/// The one table the proxy owns (family `ip`).
pub const TABLE: &str = "keelson-proxy";
/// The packet mark that asks `nat-postrouting` to masquerade (kube-proxy's bit).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// What the rules need to know about the node they run on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// The pod network (`--cluster-cidr`): traffic from elsewhere to a ClusterIP is
    /// masqueraded so replies come back through this node.
    pub cluster_cidrs: Vec<String>,
    /// The node addresses NodePorts answer on.
    pub nodeport_ips: Vec<Ipv4Addr>,
}

/// A base or regular chain: its hook line (base chains) and rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub hook: Option<&'static str>,
    pub rules: Vec<String>,
}

/// A named set or map. `elements` maps an element's key to its value (`None` for
/// sets). Dynamic sets (session affinity) are filled by the kernel, never by us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub is_map: bool,
    pub spec: String,
    pub dynamic: bool,
    pub elements: BTreeMap<String, Option<String>>,
}

/// The whole table, as data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub collections: BTreeMap<String, Collection>,
}

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const NODEPORT_IPS: &str = "nodeport-ips";
const IP_PORT_MAP: &str = "type ipv4_addr . inet_proto . inet_service : verdict;";
const PORT_MAP: &str = "type inet_proto . inet_service : verdict;";

impl Ruleset {
    fn chain(&mut self, name: String, rules: Vec<String>) {
        self.chains.insert(name, Chain { hook: None, rules });
    }

    fn base_chain(&mut self, name: &str, hook: &'static str, rules: &[&str]) {
        self.chains.insert(
            name.into(),
            Chain {
                hook: Some(hook),
                rules: rules.iter().map(|r| r.to_string()).collect(),
            },
        );
    }

    fn collection(&mut self, name: &str, is_map: bool, spec: &str) {
        self.collections.insert(
            name.into(),
            Collection {
                is_map,
                spec: spec.into(),
                dynamic: false,
                elements: BTreeMap::new(),
            },
        );
    }

    /// Adds a map element unless the key is taken (the first Service, in name order,
    /// keeps an address and port two Services both claim).
    fn element(&mut self, collection: &str, key: String, value: Option<String>) {
        if let Some(c) = self.collections.get_mut(collection) {
            c.elements.entry(key).or_insert(value);
        }
    }

    /// Number of chains and rules, for logs and metrics.
    pub fn size(&self) -> (usize, usize) {
        (
            self.chains.len(),
            self.chains.values().map(|c| c.rules.len()).sum(),
        )
    }

    /// One transaction that replaces whatever table is there by this one.
    pub fn full(&self) -> String {
        let mut out = String::new();
        // `add` first so that `delete` cannot fail on a machine without the table.
        let _ = writeln!(out, "add table ip {TABLE}");
        let _ = writeln!(out, "delete table ip {TABLE}");
        let _ = writeln!(
            out,
            "add table ip {TABLE} {{ comment \"rules for keelson-proxy\"; }}"
        );
        for (name, c) in &self.collections {
            write_collection(&mut out, name, c);
        }
        for (name, chain) in &self.chains {
            write_chain(&mut out, name, chain);
        }
        for (name, chain) in &self.chains {
            write_rules(&mut out, name, chain);
        }
        for (name, c) in &self.collections {
            write_elements(&mut out, "add", name, c.elements.iter(), true);
        }
        out
    }

    /// What the next sync needs to remember of this table once it is applied: each
    /// chain's hook and a digest of its rules (not the rules: at a thousand Services the
    /// rule text is megabytes), and the sets and maps with their elements.
    pub fn applied(&self) -> Applied {
        Applied {
            chains: self
                .chains
                .iter()
                .map(|(n, c)| (n.clone(), (c.hook, digest(&c.rules))))
                .collect(),
            collections: self.collections.clone(),
        }
    }

    /// The transaction that turns `old` (what the kernel holds) into `self`, touching
    /// only what changed: new chains are added, changed ones flushed and refilled,
    /// map elements added and deleted one by one. `None` when nothing changed.
    pub fn diff(&self, old: &Applied) -> Option<String> {
        // One digest per chain, however many times the passes below ask.
        let digests: BTreeMap<&str, u64> = self
            .chains
            .iter()
            .map(|(n, c)| (n.as_str(), digest(&c.rules)))
            .collect();
        let changed = |name: &str| {
            old.chains
                .get(name)
                .is_none_or(|(_, d)| Some(d) != digests.get(name))
        };
        if self.collections == old.collections
            && self.chains.len() == old.chains.len()
            && self.chains.keys().all(|n| !changed(n))
        {
            return None;
        }
        // A changed set type or base-chain hook cannot be patched: replace it all.
        let incompatible = self.collections.iter().any(|(n, c)| {
            old.collections
                .get(n)
                .is_some_and(|o| o.spec != c.spec || o.is_map != c.is_map)
        }) || self
            .chains
            .iter()
            .any(|(n, c)| old.chains.get(n).is_some_and(|(hook, _)| *hook != c.hook));
        if incompatible {
            return Some(self.full());
        }
        let mut out = String::new();
        for (name, c) in &self.collections {
            if !old.collections.contains_key(name) {
                write_collection(&mut out, name, c);
            }
        }
        for (name, chain) in &self.chains {
            if !old.chains.contains_key(name) {
                write_chain(&mut out, name, chain);
            } else if changed(name) {
                let _ = writeln!(out, "flush chain ip {TABLE} {name}");
            }
        }
        // Chains about to go are emptied first: a gone chain may jump to another gone
        // one, and a chain cannot be deleted while a rule still refers to it.
        for name in old.chains.keys() {
            if !self.chains.contains_key(name) {
                let _ = writeln!(out, "flush chain ip {TABLE} {name}");
            }
        }
        for (name, chain) in &self.chains {
            if changed(name) {
                write_rules(&mut out, name, chain);
            }
        }
        for (name, c) in &self.collections {
            let Some(o) = old.collections.get(name) else {
                write_elements(&mut out, "add", name, c.elements.iter(), true);
                continue;
            };
            let gone = o
                .elements
                .iter()
                .filter(|(k, v)| c.elements.get(*k) != Some(*v));
            write_elements(&mut out, "delete", name, gone, false);
            let added = c
                .elements
                .iter()
                .filter(|(k, v)| o.elements.get(*k) != Some(*v));
            write_elements(&mut out, "add", name, added, true);
        }
        for name in old.chains.keys() {
            if !self.chains.contains_key(name) {
                let _ = writeln!(out, "delete chain ip {TABLE} {name}");
            }
        }
        for name in old.collections.keys() {
            if !self.collections.contains_key(name) {
                let kind = if old.collections[name].is_map {
                    "map"
                } else {
                    "set"
                };
                let _ = writeln!(out, "delete {kind} ip {TABLE} {name}");
            }
        }
        Some(out)
    }
}

/// What the kernel holds after a sync, as [`Ruleset::applied`] keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    chains: BTreeMap<String, (Option<&'static str>, u64)>,
    collections: BTreeMap<String, Collection>,
}

/// A digest of a chain's rules (SipHash with fixed keys: stable within the process,
/// which is all a diff needs).
fn digest(rules: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut h);
    h.finish()
}

fn write_collection(out: &mut String, name: &str, c: &Collection) {
    let kind = if c.is_map { "map" } else { "set" };
    let _ = writeln!(out, "add {kind} ip {TABLE} {name} {{ {} }}", c.spec);
}

fn write_chain(out: &mut String, name: &str, chain: &Chain) {
    match chain.hook {
        Some(hook) => {
            let _ = writeln!(out, "add chain ip {TABLE} {name} {{ {hook} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
    }
}

fn write_rules(out: &mut String, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
    }
}

/// Elements in batches (one `nft` command per 500 keeps lines bounded).
fn write_elements<'a>(
    out: &mut String,
    verb: &str,
    name: &str,
    elements: impl Iterator<Item = (&'a String, &'a Option<String>)>,
    with_values: bool,
) {
    let items: Vec<String> = elements
        .map(|(k, v)| match v {
            Some(v) if with_values => format!("{k} : {v}"),
            _ => k.clone(),
        })
        .collect();
    for batch in items.chunks(500) {
        let _ = writeln!(
            out,
            "{verb} element ip {TABLE} {name} {{ {} }}",
            batch.join(", ")
        );
    }
}

fn service_chain(sp: &ServicePort) -> String {
    format!("svc-{}", sp.id)
}

fn local_chain(sp: &ServicePort) -> String {
    format!("local-{}", sp.id)
}

fn external_chain(sp: &ServicePort) -> String {
    format!("ext-{}", sp.id)
}

fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("ep-{}__{}/{}", sp.id, ep.ip, ep.port)
}

fn affinity_set(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("aff-{}__{}/{}", sp.id, ep.ip, ep.port)
}

/// Rules that spread over `endpoints` (honouring ClientIP affinity first), or drop
/// when there is none (a Local policy with no endpoint on this node).
fn balance(sp: &ServicePort, endpoints: &[Endpoint], rules: &mut Vec<String>) {
    if endpoints.is_empty() {
        rules.push("drop".into());
        return;
    }
    if sp.affinity_seconds.is_some() {
        for ep in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(sp, ep),
                endpoint_chain(sp, ep)
            ));
        }
    }
    if endpoints.len() == 1 {
        rules.push(format!("goto {}", endpoint_chain(sp, &endpoints[0])));
    } else {
        let arms: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(sp, ep)))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            arms.join(", ")
        ));
    }
}

/// The whole table for these Service ports on this node.
pub fn render(ports: &[ServicePort], node: &NodeContext) -> Ruleset {
    let mut rs = Ruleset::default();
    rs.collection(SERVICE_IPS, true, IP_PORT_MAP);
    rs.collection(SERVICE_NODEPORTS, true, PORT_MAP);
    rs.collection(NO_ENDPOINT_SERVICES, true, IP_PORT_MAP);
    rs.collection(NO_ENDPOINT_NODEPORTS, true, PORT_MAP);
    rs.collection(NODEPORT_IPS, false, "type ipv4_addr;");
    for ip in &node.nodeport_ips {
        rs.element(NODEPORT_IPS, ip.to_string(), None);
    }

    // Services without endpoints are refused before DNAT would have happened, so a
    // client sees "connection refused" at once instead of a time-out.
    rs.base_chain(
        "filter-prerouting",
        "type filter hook prerouting priority -110; policy accept;",
        &["ct state new jump service-endpoints-check"],
    );
    rs.base_chain(
        "filter-output",
        "type filter hook output priority -110; policy accept;",
        &["ct state new jump service-endpoints-check"],
    );
    rs.chain(
        "service-endpoints-check".into(),
        vec![
            format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
            format!(
                "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
            ),
        ],
    );
    rs.chain(
        "reject-chain".into(),
        vec!["reject with icmp type port-unreachable".into()],
    );
    rs.chain("drop-chain".into(), vec!["drop".into()]);
    rs.base_chain(
        "nat-prerouting",
        "type nat hook prerouting priority -100; policy accept;",
        &["jump services"],
    );
    rs.base_chain(
        "nat-output",
        "type nat hook output priority -100; policy accept;",
        &["jump services"],
    );
    rs.base_chain(
        "nat-postrouting",
        "type nat hook postrouting priority 100; policy accept;",
        &["jump masquerading"],
    );
    rs.chain(
        "mark-for-masquerade".into(),
        vec![format!("meta mark set meta mark or {MASQUERADE_MARK:#x}")],
    );
    rs.chain(
        "masquerading".into(),
        vec![
            format!("meta mark & {MASQUERADE_MARK:#x} == 0 return"),
            format!("meta mark set meta mark xor {MASQUERADE_MARK:#x}"),
            "masquerade fully-random".into(),
        ],
    );
    rs.chain(
        "services".into(),
        vec![
            format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
            format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    let pod_network = match node.cluster_cidrs.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("{{ {} }}", many.join(", "))),
    };

    for sp in ports {
        let proto = sp.id.protocol.as_str();
        let svc = service_chain(sp);
        let local = local_chain(sp);
        let has_endpoints = !sp.cluster_endpoints.is_empty();

        // Endpoint chains (and their affinity sets) for every endpoint either policy uses.
        let mut used: Vec<&Endpoint> = sp.cluster_endpoints.iter().collect();
        for ep in &sp.local_endpoints {
            if !used.contains(&ep) {
                used.push(ep);
            }
        }
        for ep in used {
            let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
            if let Some(timeout) = sp.affinity_seconds {
                let set = affinity_set(sp, ep);
                rs.collections.insert(
                    set.clone(),
                    Collection {
                        is_map: false,
                        spec: format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                        dynamic: true,
                        elements: BTreeMap::new(),
                    },
                );
                rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            rules.push(format!(
                "meta l4proto {proto} dnat to {}:{}",
                ep.ip, ep.port
            ));
            rs.chain(endpoint_chain(sp, ep), rules);
        }

        if has_endpoints {
            let mut rules = Vec::new();
            if let (Some(cip), Some(net)) = (sp.cluster_ip, &pod_network) {
                rules.push(format!(
                    "ip daddr {cip} {proto} dport {} ip saddr != {net} jump mark-for-masquerade",
                    sp.port
                ));
            }
            balance(sp, &sp.cluster_endpoints, &mut rules);
            rs.chain(svc.clone(), rules);
            if sp.internal_policy_local || sp.external_policy_local {
                let mut rules = Vec::new();
                balance(sp, &sp.local_endpoints, &mut rules);
                rs.chain(local.clone(), rules);
            }
        }
        let internal = if sp.internal_policy_local {
            &local
        } else {
            &svc
        };

        // ClusterIP.
        if let Some(cip) = sp.cluster_ip {
            let key = format!("{cip} . {proto} . {}", sp.port);
            if has_endpoints {
                rs.element(SERVICE_IPS, key, Some(format!("goto {internal}")));
            } else {
                rs.element(NO_ENDPOINT_SERVICES, key, Some("goto reject-chain".into()));
            }
        }

        // NodePort, externalIPs and LoadBalancer ingress: the external chain.
        if !sp.has_external() {
            continue;
        }
        let ext = external_chain(sp);
        if has_endpoints {
            let mut rules = Vec::new();
            if sp.external_policy_local {
                // Pods and the node itself may use any endpoint; others keep their
                // source address and reach only this node's endpoints.
                if let Some(net) = &pod_network {
                    rules.push(format!("ip saddr {net} goto {internal}"));
                }
                rules.push("fib saddr type local jump mark-for-masquerade".into());
                rules.push(format!("fib saddr type local goto {internal}"));
                rules.push(format!("goto {local}"));
            } else {
                rules.push("jump mark-for-masquerade".into());
                rules.push(format!("goto {svc}"));
            }
            rs.chain(ext.clone(), rules);
        }
        for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if has_endpoints {
                rs.element(SERVICE_IPS, key, Some(format!("goto {ext}")));
            } else {
                rs.element(NO_ENDPOINT_SERVICES, key, Some("goto reject-chain".into()));
            }
        }
        if let Some(np) = sp.node_port {
            let key = format!("{proto} . {np}");
            if has_endpoints {
                rs.element(SERVICE_NODEPORTS, key, Some(format!("goto {ext}")));
            } else {
                rs.element(NO_ENDPOINT_NODEPORTS, key, Some("goto reject-chain".into()));
            }
        }
    }
    rs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service_ports;
    use crate::model::tests::{service, web};
    use serde_json::json;

    fn node() -> NodeContext {
        NodeContext {
            cluster_cidrs: vec!["10.201.0.0/16".into()],
            nodeport_ips: vec!["10.200.1.2".parse().unwrap()],
        }
    }

    #[test]
    fn a_node_port_service_gets_its_chains_and_map_entries() {
        let (svc, sl) = web();
        let rs = render(&service_ports(&[svc], &[sl], "n1"), &node());
        let svc_chain = &rs.chains["svc-default/web/tcp/http"];
        assert_eq!(
            svc_chain.rules,
            [
                "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.201.0.0/16 jump mark-for-masquerade",
                "numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http__10.201.0.5/8080, 1 : goto ep-default/web/tcp/http__10.201.0.70/8080 }",
            ]
        );
        assert_eq!(
            rs.chains["ep-default/web/tcp/http__10.201.0.5/8080"].rules,
            [
                "ip saddr 10.201.0.5 jump mark-for-masquerade",
                "meta l4proto tcp dnat to 10.201.0.5:8080",
            ]
        );
        assert_eq!(
            rs.collections[SERVICE_IPS].elements["10.96.0.20 . tcp . 80"],
            Some("goto svc-default/web/tcp/http".into())
        );
        assert_eq!(
            rs.collections[SERVICE_NODEPORTS].elements["tcp . 30080"],
            Some("goto ext-default/web/tcp/http".into())
        );
        // The terminating endpoint is not used while others are ready.
        assert!(!rs.chains.keys().any(|k| k.contains("10.201.0.9")));
    }

    #[test]
    fn no_endpoints_means_reject_and_removing_a_service_removes_its_rules() {
        let (svc, sl) = web();
        let lonely = render(
            &service_ports(std::slice::from_ref(&svc), &[], "n1"),
            &node(),
        );
        assert!(lonely.collections[SERVICE_IPS].elements.is_empty());
        assert_eq!(
            lonely.collections[NO_ENDPOINT_SERVICES].elements["10.96.0.20 . tcp . 80"],
            Some("goto reject-chain".into())
        );
        assert_eq!(
            lonely.collections[NO_ENDPOINT_NODEPORTS].elements["tcp . 30080"],
            Some("goto reject-chain".into())
        );
        let full = render(&service_ports(&[svc], &[sl], "n1"), &node());
        let empty = render(&[], &node());
        let diff = empty.diff(&full.applied()).unwrap();
        assert!(diff.contains("delete chain ip keelson-proxy svc-default/web/tcp/http"));
        assert!(
            diff.contains("delete element ip keelson-proxy service-ips { 10.96.0.20 . tcp . 80 }")
        );
        assert!(empty.diff(&empty.applied()).is_none());
    }

    #[test]
    fn one_endpoint_change_touches_only_that_service() {
        let (svc, sl) = web();
        let other = service(json!({
            "metadata": {"name": "other", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 53, "protocol": "UDP"}]}
        }));
        let before = render(
            &service_ports(&[svc.clone(), other.clone()], &[sl], "n1"),
            &node(),
        );
        let after = render(&service_ports(&[svc, other], &[], "n1"), &node());
        let diff = after.diff(&before.applied()).unwrap();
        assert!(!diff.contains("other"), "{diff}");
        assert!(!diff.contains("delete table"), "{diff}");
        assert!(diff.contains("add element ip keelson-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"));
    }

    #[test]
    fn affinity_and_local_external_policy() {
        let svc = service(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer", "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                     "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
                     "ports": [{"port": 80, "nodePort": 30001}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.200.1.240"}]}}
        }));
        let sl = crate::model::tests::slice(json!({
            "metadata": {"name": "lb-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "lb"}},
            "addressType": "IPv4",
            "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.201.0.80"], "nodeName": "n2"}]
        }));
        let rs = render(&service_ports(&[svc], &[sl], "n1"), &node());
        let set = &rs.collections["aff-default/lb/tcp/__10.201.0.80/80"];
        assert!(set.dynamic && set.spec.contains("timeout 60s"));
        assert_eq!(
            rs.chains["ext-default/lb/tcp/"].rules,
            [
                "ip saddr 10.201.0.0/16 goto svc-default/lb/tcp/",
                "fib saddr type local jump mark-for-masquerade",
                "fib saddr type local goto svc-default/lb/tcp/",
                "goto local-default/lb/tcp/",
            ]
        );
        // No endpoint on n1: external clients are dropped here, not sent elsewhere.
        assert_eq!(rs.chains["local-default/lb/tcp/"].rules, ["drop"]);
        assert_eq!(
            rs.collections[SERVICE_IPS].elements["10.200.1.240 . tcp . 80"],
            Some("goto ext-default/lb/tcp/".into())
        );
    }

    /// Every construct the renderer emits goes through the real nft, and a diff
    /// applied on top of the old table leaves exactly what a full load of the new one
    /// does: the partial path cannot drift from the full one.
    #[test]
    fn the_real_nft_takes_full_loads_and_diffs_alike() {
        let (svc, sl) = web();
        let lb = service(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer", "sessionAffinity": "ClientIP",
                     "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                     "externalIPs": ["192.0.2.7"],
                     "ports": [{"port": 80, "nodePort": 30001}, {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                               {"name": "s", "port": 9, "protocol": "SCTP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.200.1.240"}]}}
        }));
        let lb_slice = crate::model::tests::slice(json!({
            "metadata": {"name": "lb-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "lb"}},
            "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "s", "port": 9, "protocol": "SCTP"}],
            "endpoints": [{"addresses": ["10.201.0.80"], "nodeName": "n1"}, {"addresses": ["10.201.0.81"], "nodeName": "n2"}]
        }));
        let old = render(
            &service_ports(&[svc.clone(), lb.clone()], &[sl.clone(), lb_slice], "n1"),
            &node(),
        );
        let new = render(&service_ports(&[svc, lb], &[sl], "n1"), &node());

        let a = crate::test_netns::Netns::new("rules-a");
        a.load(&old.full());
        a.load(&new.diff(&old.applied()).expect("something changed"));
        let b = crate::test_netns::Netns::new("rules-b");
        b.load(&new.full());
        let list = |ns: &crate::test_netns::Netns| ns.nft(&["list", "table", "ip", TABLE], "").1;
        assert_eq!(list(&a), list(&b));
        // And a full load replaces a table wholesale, however it looked.
        a.load(&old.full());
        let c = crate::test_netns::Netns::new("rules-c");
        c.load(&old.full());
        assert_eq!(list(&a), list(&c));
        assert!(list(&c).contains("aff-default/lb/tcp/__10.201.0.80/80"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let (svc, sl) = web();
        let a = render(
            &service_ports(std::slice::from_ref(&svc), std::slice::from_ref(&sl), "n1"),
            &node(),
        )
        .full();
        let b = render(&service_ports(&[svc], &[sl], "n1"), &node()).full();
        assert_eq!(a, b);
    }
}
