//! Making LoadBalancer ingress addresses reachable without a cloud, as MetalLB's
//! layer-2 mode does: for each address that no node holds, every proxy computes the
//! same owner among the eligible nodes (rendezvous hashing over the Ready nodes, or
//! over those with a ready local endpoint under externalTrafficPolicy: Local), and
//! the owner adds the address to its `keelson-lb0` interface, so its kernel answers
//! ARP for it on the node network. When nodes or endpoints change, ownership moves
//! with the next sync of every proxy; no coordination is needed beyond the API.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::model::ServicePort;

/// Nodes with this label never announce (Kubernetes' well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node that may announce addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub addresses: Vec<Ipv4Addr>,
}

/// Drops what the proxy never reads from a cached Node: it needs the name, labels,
/// addresses and conditions, not the image list or the rest of the status.
pub fn trim_node(node: &mut Node) {
    node.metadata.annotations = None;
    node.metadata.managed_fields = None;
    node.spec = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.node_info = None;
        status.capacity = None;
        status.allocatable = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
        status.daemon_endpoints = None;
        status.config = None;
    }
}

/// The Ready, non-excluded nodes and their InternalIPs.
pub fn candidates(nodes: &[std::sync::Arc<Node>]) -> Vec<Candidate> {
    nodes
        .iter()
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|n| Candidate {
            name: n.metadata.name.clone().unwrap_or_default(),
            addresses: internal_ips(n),
        })
        .collect()
}

/// A Node's IPv4 InternalIP addresses.
pub fn internal_ips(node: &Node) -> Vec<Ipv4Addr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// FNV-1a: stable across processes and versions, unlike std's hasher.
fn score(address: Ipv4Addr, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in address.octets().iter().chain(node.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The addresses `me` should hold: LoadBalancer ingress IPs that are not a node's
/// own address and whose owner is `me`.
pub fn owned_addresses(
    ports: &[ServicePort],
    candidates: &[Candidate],
    me: &str,
) -> BTreeSet<Ipv4Addr> {
    let node_addresses: BTreeSet<Ipv4Addr> = candidates
        .iter()
        .flat_map(|c| c.addresses.iter().copied())
        .collect();
    let mut out = BTreeSet::new();
    for sp in ports {
        if sp.cluster_endpoints.is_empty() {
            continue;
        }
        let with_endpoint: BTreeSet<String> = sp
            .cluster_endpoints
            .iter()
            .filter_map(|e| e.node.clone())
            .collect();
        for ip in &sp.load_balancer_ips {
            if node_addresses.contains(ip) {
                continue;
            }
            let owner = candidates
                .iter()
                .filter(|c| !sp.external_policy_local || with_endpoint.contains(&c.name))
                .max_by_key(|c| (score(*ip, &c.name), c.name.clone()));
            if owner.is_some_and(|c| c.name == me) {
                out.insert(*ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service_ports;
    use crate::model::tests::{service, slice};
    use serde_json::json;

    fn lb(policy: &str) -> Vec<ServicePort> {
        let svc = service(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "ports": [{"port": 80, "nodePort": 30001}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.200.1.240"}, {"ip": "10.200.1.2"}]}}
        }));
        let sl = slice(json!({
            "metadata": {"name": "lb-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "lb"}},
            "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.201.0.80"], "nodeName": "n2"}]
        }));
        service_ports(&[svc], &[sl], "n1")
    }

    fn nodes() -> Vec<Candidate> {
        ["n1", "n2", "n3"]
            .iter()
            .enumerate()
            .map(|(i, n)| Candidate {
                name: n.to_string(),
                addresses: vec![Ipv4Addr::new(10, 200, 1, 2 + i as u8)],
            })
            .collect()
    }

    #[test]
    fn exactly_one_node_owns_each_address_and_node_addresses_are_skipped() {
        let ports = lb("Cluster");
        let owners: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|me| !owned_addresses(&ports, &nodes(), me).is_empty())
            .collect();
        assert_eq!(owners.len(), 1);
        let held = owned_addresses(&ports, &nodes(), owners[0]);
        assert_eq!(
            held.into_iter().collect::<Vec<_>>(),
            ["10.200.1.240".parse::<Ipv4Addr>().unwrap()]
        );
    }

    #[test]
    fn local_policy_announces_from_a_node_with_an_endpoint() {
        let ports = lb("Local");
        let nodes = nodes();
        assert!(!owned_addresses(&ports, &nodes, "n2").is_empty());
        assert!(owned_addresses(&ports, &nodes, "n1").is_empty());
        assert!(owned_addresses(&ports, &nodes, "n3").is_empty());
    }
}
