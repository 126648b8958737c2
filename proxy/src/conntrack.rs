//! Stale UDP conntrack entries. A UDP "connection" to a Service keeps its DNAT in
//! conntrack for as long as the client keeps sending (DNS clients reuse a source
//! port), so when an endpoint goes its entries must be deleted or the client keeps
//! talking to an address that no longer answers. kube-proxy does the same with the
//! `conntrack` tool (Debian's conntrack package).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::model::{Protocol, ServicePort};

/// One `conntrack -D` filter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    /// Flows to a Service address that were DNATed to an endpoint that is gone.
    ToEndpoint {
        destination: Ipv4Addr,
        port: u16,
        endpoint: Ipv4Addr,
    },
    /// Flows to a NodePort (any node address) DNATed to a gone endpoint.
    NodePortToEndpoint { node_port: u16, endpoint: Ipv4Addr },
    /// Every flow to a Service address that just got its first endpoint: entries made
    /// while it had none would otherwise black-hole the client.
    ToService { destination: Ipv4Addr, port: u16 },
}

impl Flow {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-D", "-p", "udp"].map(String::from).to_vec();
        match self {
            Flow::ToEndpoint {
                destination,
                port,
                endpoint,
            } => a.extend([
                "--orig-dst".into(),
                destination.to_string(),
                "--orig-port-dst".into(),
                port.to_string(),
                "--dst-nat".into(),
                endpoint.to_string(),
            ]),
            Flow::NodePortToEndpoint {
                node_port,
                endpoint,
            } => a.extend([
                "--orig-port-dst".into(),
                node_port.to_string(),
                "--dst-nat".into(),
                endpoint.to_string(),
            ]),
            Flow::ToService { destination, port } => a.extend([
                "--orig-dst".into(),
                destination.to_string(),
                "--orig-port-dst".into(),
                port.to_string(),
            ]),
        }
        a
    }
}

fn destinations(sp: &ServicePort) -> impl Iterator<Item = Ipv4Addr> + '_ {
    sp.cluster_ip
        .into_iter()
        .chain(sp.external_ips.iter().copied())
        .chain(sp.load_balancer_ips.iter().copied())
}

fn usable_ips(sp: &ServicePort) -> BTreeSet<Ipv4Addr> {
    sp.cluster_endpoints
        .iter()
        .chain(&sp.local_endpoints)
        .map(|e| e.ip)
        .collect()
}

/// The UDP flows to delete after the rules went from `old` to `new`.
pub fn stale_flows(old: &[ServicePort], new: &[ServicePort]) -> Vec<Flow> {
    let mut out = BTreeSet::new();
    for o in old.iter().filter(|o| o.id.protocol == Protocol::Udp) {
        let now = new.iter().find(|n| n.id == o.id);
        let still = now.map(usable_ips).unwrap_or_default();
        for gone in usable_ips(o).difference(&still) {
            for destination in destinations(o) {
                out.insert(Flow::ToEndpoint {
                    destination,
                    port: o.port,
                    endpoint: *gone,
                });
            }
            if let Some(node_port) = o.node_port {
                out.insert(Flow::NodePortToEndpoint {
                    node_port,
                    endpoint: *gone,
                });
            }
        }
    }
    for n in new.iter().filter(|n| n.id.protocol == Protocol::Udp) {
        let had = old
            .iter()
            .find(|o| o.id == n.id)
            .is_some_and(|o| !o.cluster_endpoints.is_empty());
        if !had && !n.cluster_endpoints.is_empty() {
            for destination in destinations(n) {
                out.insert(Flow::ToService {
                    destination,
                    port: n.port,
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Deletes the flows; `conntrack` exits 1 when nothing matched, which is fine.
pub async fn delete(flows: &[Flow]) -> anyhow::Result<()> {
    for flow in flows {
        let out = tokio::process::Command::new("conntrack")
            .args(flow.args())
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("running conntrack (Debian's conntrack package): {e}"))?;
        let code = out.status.code().unwrap_or(-1);
        if code != 0 && code != 1 {
            anyhow::bail!(
                "conntrack {}: {}",
                flow.args().join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tracing::debug!(?flow, "cleared stale UDP conntrack entries");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service_ports;
    use crate::model::tests::{service, slice};
    use serde_json::json;

    #[test]
    fn a_gone_udp_endpoint_and_a_first_endpoint_clear_flows() {
        let dns = service(json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
        }));
        let two = slice(json!({
            "metadata": {"name": "a", "namespace": "kube-system", "labels": {"kubernetes.io/service-name": "kube-dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.200.1.2"]}, {"addresses": ["10.200.1.3"]}]
        }));
        let one = slice(json!({
            "metadata": {"name": "a", "namespace": "kube-system", "labels": {"kubernetes.io/service-name": "kube-dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.200.1.3"]}]
        }));
        let before = service_ports(std::slice::from_ref(&dns), &[two], "n1");
        let after = service_ports(std::slice::from_ref(&dns), &[one], "n1");
        assert_eq!(
            stale_flows(&before, &after),
            [Flow::ToEndpoint {
                destination: "10.96.0.10".parse().unwrap(),
                port: 53,
                endpoint: "10.200.1.2".parse().unwrap()
            }]
        );
        let none = service_ports(&[dns], &[], "n1");
        assert_eq!(
            stale_flows(&none, &after),
            [Flow::ToService {
                destination: "10.96.0.10".parse().unwrap(),
                port: 53
            }]
        );
        assert!(stale_flows(&after, &after).is_empty());
    }
}
